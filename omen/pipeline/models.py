"""``GET /v1/models``: every configured model and alias, discovered models and the demo model,
each with the provider that serves it.

Entries keep OpenAI's shape (``id``, ``object``, ``created``, ``owned_by``) and add what OpenRouter's
listing shows, from the capability catalog (omen/catalog) and the config's overrides:
``context_length``, ``pricing`` (USD per token as decimal strings: ``prompt``, ``completion``,
``input_cache_read``), ``architecture.input_modalities`` and ``top_provider.max_completion_tokens``
when known, and ``capabilities`` (vision, tools, json_mode, context_window, max_output_tokens; null
when unknown).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson

from omen.catalog.capabilities import Capabilities, Pricing, capabilities_for
from omen.pipeline.gateway import Gateway
from omen.routing.table import Route


def _entry(gw: Gateway, route: Route) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": route.public_model,
        "object": "model",
        "created": 0,
        "owned_by": route.provider_id if route.provider_id != "demo" else "omen-demo",
        "provider": route.provider_id,
        "provider_type": gw.table.provider_types.get(route.provider_id, route.provider_id),
        "upstream_model": route.upstream_model,
    }
    if route.via == "alias":
        entry["alias_of"] = gw.table.aliases.get(route.public_model)
    if route.provider_id == "demo":
        entry["demo"] = True
        entry["description"] = "Built-in demo model: answers locally, no provider needed."
    entry.update(_catalog_fields(capabilities_for(gw.config, gw.table.aliases, route)))
    return entry


_PER_TOKEN = Decimal(1_000_000)


def _per_token(per_million: float) -> str:
    """OpenRouter's price format: USD per token as a plain decimal string (2.5/1M -> "0.0000025")."""
    return format((Decimal(str(per_million)) / _PER_TOKEN).normalize(), "f")


def _pricing(pricing: Pricing | None) -> dict[str, str] | None:
    if pricing is None:
        return None
    fields = {"prompt": pricing.input, "completion": pricing.output, "input_cache_read": pricing.cached_input}
    out = {key: _per_token(value) for key, value in fields.items() if value is not None}
    return out or None


def _catalog_fields(caps: Capabilities) -> dict[str, Any]:
    out: dict[str, Any] = {
        "context_length": caps.context_window,
        "pricing": _pricing(caps.pricing),
        "capabilities": {
            "vision": caps.vision,
            "tools": caps.tools,
            "json_mode": caps.json_mode,
            "context_window": caps.context_window,
            "max_output_tokens": caps.max_output_tokens,
        },
    }
    if caps.vision is not None:
        inputs = ["text", "image"] if caps.vision else ["text"]
        out["architecture"] = {"input_modalities": inputs, "output_modalities": ["text"]}
    if caps.context_window is not None or caps.max_output_tokens is not None:
        out["top_provider"] = {"context_length": caps.context_window, "max_completion_tokens": caps.max_output_tokens}
    return out


def model_list(gw: Gateway) -> bytes:
    routes = list(gw.table.routes.values()) + list(gw.table.discovered.values())
    return orjson.dumps({"object": "list", "data": [_entry(gw, r) for r in routes]})


def model_entry(gw: Gateway, model_id: str) -> bytes:
    route = gw.table.resolve(model_id)  # raises 404 model_not_found
    return orjson.dumps(_entry(gw, route))
