"""``GET /v1/models``: every configured model and alias, discovered models and the demo model,
each with the provider that serves it."""

from __future__ import annotations

from typing import Any

import orjson

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
    return entry


def model_list(gw: Gateway) -> bytes:
    routes = list(gw.table.routes.values()) + list(gw.table.discovered.values())
    return orjson.dumps({"object": "list", "data": [_entry(gw, r) for r in routes]})


def model_entry(gw: Gateway, model_id: str) -> bytes:
    route = gw.table.resolve(model_id)  # raises 404 model_not_found
    return orjson.dumps(_entry(gw, route))
