"""What a model can do and what it costs: the built-in catalog (:mod:`omen.catalog.known`) merged
with the operator's ``[models."x"] capabilities = {...}`` / ``pricing = {...}`` overrides.

Every field is optional: ``None`` means *unknown*, and the pipeline never refuses a request because
of an unknown capability (a model missing from the catalog, a new snapshot, a private deployment).

Lookup of a model id: lower-cased and stripped of provider decorations (Gemini's ``models/``,
Yandex's ``gpt://<folder>/``, Bedrock's region prefix and ``anthropic.``), then an exact catalog id,
else the longest catalog id it starts with where the rest begins a new component (``-``, ``:``,
``@``, ``/``, ``_``) and is not a minor version: ``claude-sonnet-4-20250514`` and
``llama3.1:8b`` match ``claude-sonnet-4`` and ``llama3.1``, but ``claude-sonnet-4-5`` does not fall
back to ``claude-sonnet-4`` and ``grok-4.3`` does not fall back to ``grok-4`` — a newer model must not
inherit an older one's limits.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import lru_cache

from omen.config.schema import CapabilitiesConfig, OmenConfig, PricingConfig
from omen.routing.table import Route


@dataclass(frozen=True, slots=True)
class Pricing:
    """USD per 1M tokens."""

    input: float | None = None
    output: float | None = None
    cached_input: float | None = None


@dataclass(frozen=True, slots=True)
class Capabilities:
    vision: bool | None = None
    tools: bool | None = None
    json_mode: bool | None = None
    context_window: int | None = None
    max_output_tokens: int | None = None
    pricing: Pricing | None = None

    def with_overrides(self, caps: CapabilitiesConfig | None, pricing: PricingConfig | None) -> Capabilities:
        """This entry with every field the operator set replaced (unset fields keep the catalog's)."""
        out = self
        if caps is not None:
            out = replace(
                out,
                **{
                    f: getattr(caps, f)
                    for f in ("vision", "tools", "json_mode", "context_window", "max_output_tokens")
                    if getattr(caps, f) is not None
                },
            )
        if pricing is not None:
            base = out.pricing or Pricing()
            out = replace(
                out,
                pricing=Pricing(
                    input=pricing.input if pricing.input is not None else base.input,
                    output=pricing.output if pricing.output is not None else base.output,
                    cached_input=pricing.cached_input if pricing.cached_input is not None else base.cached_input,
                ),
            )
        return out


UNKNOWN = Capabilities()

_YANDEX_URI = re.compile(r"^gpt://[^/]+/")
_BEDROCK = re.compile(r"^(?:(?:us|eu|apac|global|us-gov|jp|au|ca)\.)?((?:anthropic|amazon|meta)\..*)$")
_COMPONENT_START = ("-", ":", "@", "/", "_")
_MINOR_VERSION = re.compile(r"-\d{1,2}(?!\d)")  # "-5" in claude-sonnet-4-5; not "-20250514" or "-0613"


def normalise(model_id: str) -> str:
    name = model_id.strip().lower()
    name = name.removeprefix("models/")  # Gemini's resource name
    name = _YANDEX_URI.sub("", name)  # gpt://<folder>/yandexgpt/latest -> yandexgpt/latest
    bedrock = _BEDROCK.match(name)
    if bedrock:  # us.anthropic.claude-... -> claude-... (the same model as Anthropic's own API)
        name = bedrock.group(1).removeprefix("anthropic.")
    return name


@lru_cache(maxsize=4096)
def lookup(model_id: str) -> Capabilities:
    """The catalog entry for ``model_id`` (see the module docstring), or :data:`UNKNOWN`."""
    from omen.catalog.known import CATALOG

    name = normalise(model_id)
    entry = CATALOG.get(name)
    if entry is not None:
        return entry
    best = ""
    for key in CATALOG:
        if len(key) > len(best) and name.startswith(key):
            rest = name[len(key) :]
            if rest.startswith(_COMPONENT_START) and not _MINOR_VERSION.match(rest):
                best = key
    return CATALOG[best] if best else UNKNOWN


def capabilities_for(config: OmenConfig, aliases: Mapping[str, str], route: Route) -> Capabilities:
    """What the model behind ``route`` can do: the catalog entry of its upstream model (else of the
    public id, e.g. an Azure deployment configured under a model's name), with the operator's
    overrides for the configured model (aliases share their model's overrides)."""
    found = lookup(route.upstream_model)
    if found is UNKNOWN and route.public_model != route.upstream_model:
        found = lookup(route.public_model)
    configured = config.models.get(aliases.get(route.public_model, route.public_model))
    if configured is not None and (configured.capabilities is not None or configured.pricing is not None):
        found = found.with_overrides(configured.capabilities, configured.pricing)
    return found
