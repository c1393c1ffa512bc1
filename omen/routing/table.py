"""Resolve the ``model`` a client asked for to (provider, upstream model).

Lookup order: a configured model id, an alias, ``<provider id>/<upstream model>`` for any configured
provider, a model discovered from a provider's listing, and finally a well-known model family
(``gpt-*`` -> the provider of type openai, ``grok-*`` -> xai, ``claude-*`` -> anthropic, ``gemini-*`` ->
gemini, ``GigaChat*`` -> gigachat, ``yandexgpt*`` -> yandex) when exactly one such provider exists.
Everything is a dict lookup; nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from omen.config.schema import OmenConfig
from omen.errors import model_not_found

_FAMILIES: list[tuple[tuple[str, ...], str]] = [
    (("gpt-", "o1", "o3", "o4", "chatgpt-", "text-embedding-", "davinci-", "babbage-", "omni-"), "openai"),
    (("grok-",), "xai"),
    (("claude-",), "anthropic"),
    (("gemini-", "gemma-", "text-embedding-004", "gemini-embedding-"), "gemini"),
    (("GigaChat", "Embeddings"), "gigachat"),
    (("yandexgpt", "text-search-doc", "text-search-query"), "yandex"),
]


@dataclass(slots=True, frozen=True)
class Route:
    public_model: str
    provider_id: str
    upstream_model: str
    via: str  # "model" | "alias" | "provider-prefix" | "discovered" | "family" — for logs and listing


@dataclass
class ModelTable:
    routes: dict[str, Route] = field(default_factory=dict)  # public id or alias -> route
    aliases: dict[str, str] = field(default_factory=dict)  # alias -> public id
    discovered: dict[str, Route] = field(default_factory=dict)  # "<provider>/<model>" -> route
    provider_types: dict[str, str] = field(default_factory=dict)  # provider id -> type
    demo: Route | None = None

    @classmethod
    def from_config(cls, config: OmenConfig, demo_enabled: bool) -> ModelTable:
        table = cls(provider_types={pid: p.type or pid for pid, p in config.providers.items()})
        for mid, m in config.models.items():
            if m.provider is not None:
                route = Route(mid, m.provider, m.model or mid, "model")
            else:  # a model group: its first deployment of the first tier (omen/routing/router.py chooses)
                first = min(m.deployments, key=lambda d: d.priority)
                route = Route(mid, first.provider, first.model or mid, "group")
            table.routes[mid] = route
            for alias in m.aliases:
                table.aliases[alias] = mid
        for alias, target in config.aliases.items():
            table.aliases[alias] = target
        for alias, target in table.aliases.items():
            base = table.routes[target]
            table.routes[alias] = Route(alias, base.provider_id, base.upstream_model, "alias")
        if demo_enabled:
            from omen.config.loader import DEMO_MODEL, DEMO_PROVIDER

            table.demo = Route(DEMO_MODEL, DEMO_PROVIDER, DEMO_MODEL, "model")
            table.routes.setdefault(DEMO_MODEL, table.demo)
        return table

    def resolve(self, model: str) -> Route:
        route = self.routes.get(model)
        if route is not None:
            return route
        route = self.discovered.get(model)
        if route is not None:
            return route
        provider_id, sep, upstream = model.partition("/")
        if sep and upstream and provider_id in self.provider_types:
            return Route(model, provider_id, upstream, "provider-prefix")
        for prefixes, ptype in _FAMILIES:
            if model.startswith(prefixes):
                candidates = [pid for pid, t in self.provider_types.items() if t == ptype]
                if len(candidates) == 1:
                    return Route(model, candidates[0], model, "family")
        raise model_not_found(model)

    def set_discovered(self, provider_id: str, upstream_models: list[str]) -> None:
        """Replace what a provider's listing says it serves (refreshed in the background)."""
        kept = {k: r for k, r in self.discovered.items() if r.provider_id != provider_id}
        for name in upstream_models:
            public = f"{provider_id}/{name}"
            kept[public] = Route(public, provider_id, name, "discovered")
        self.discovered = kept
