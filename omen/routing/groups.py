"""Model groups: a public model name and the deployments that serve it, built once at startup.

Every configured model is a group: ``[models."x"] provider/model`` is a group of one deployment, and
``deployments = [...]`` a group of several with a strategy, priority tiers, fallbacks and hedging.
Names that are no configured model (``<provider>/<model>``, discovered models, model families, the
demo model) resolve through the model table to a deployment made on first use (:class:`Deployments`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from omen.catalog.capabilities import Capabilities, capabilities_for
from omen.config.schema import DeploymentConfig, ModelConfig, OmenConfig
from omen.routing.deployments import Deployment, adhoc_deployment, build_deployment
from omen.routing.table import ModelTable, Route

# Ad-hoc deployments kept for their statistics and breaker: a client can send any number of distinct
# "<provider>/<model>" names, so the cache is bounded; past it a name gets a fresh, unshared deployment.
MAX_ADHOC = 1024


@dataclass(slots=True, eq=False)
class ModelGroup:
    name: str
    config: ModelConfig
    deployments: list[Deployment]
    tiers: list[list[Deployment]]  # by ascending priority; tier 1 first
    strategy: str = "weighted"
    fallbacks: tuple[str, ...] = ()
    context_window_fallbacks: tuple[str, ...] = ()
    content_filter_fallbacks: tuple[str, ...] = ()
    hedge: bool = False
    hedge_after_ms: float | None = None
    sticky: str | None = None
    retries: int | None = None  # the request's retry budget when this is its model (None: routing.retries)
    all_served: bool = False  # every deployment's provider is configured (always, past the loader's checks)

    @property
    def single(self) -> Deployment | None:
        """The deployment of a group of one with nothing to decide (the fast path), else None."""
        if len(self.deployments) == 1 and not self.fallbacks and not self.hedge:
            return self.deployments[0]
        return None

    def p95_first_byte_ms(self) -> float | None:
        """The slowest tier-1 deployment's observed p95 time to response headers (hedging's trigger)."""
        values = [v for d in self.tiers[0] if (v := d.stats.p95_ttft_ms()) is not None]
        return max(values) if values else None


@dataclass
class Deployments:
    """Every group and deployment of the gateway, by name."""

    groups: dict[str, ModelGroup] = field(default_factory=dict)  # public model -> group (aliases too)
    by_id: dict[str, Deployment] = field(default_factory=dict)  # configured deployments
    adhoc: dict[tuple[str, str], Deployment] = field(default_factory=dict)
    config: OmenConfig | None = None
    aliases: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: OmenConfig, table: ModelTable) -> Deployments:
        out = cls(config=config, aliases=table.aliases)

        def caps(public: str, upstream: str) -> Capabilities:
            return capabilities_for(config, table.aliases, Route(public, "", upstream, "group"))

        for mid, mcfg in config.models.items():
            entries = mcfg.deployments or [DeploymentConfig(provider=mcfg.provider or "", model=mcfg.model)]
            deployments: list[Deployment] = []
            for entry in entries:
                deployment = build_deployment(entry, mid, config, table.provider_types, caps)
                if deployment.provider_id == "demo":
                    deployment.breaker = None  # the demo model answers in-process; nothing to break
                deployment.id = _unique(deployment.id, out.by_id)
                out.by_id[deployment.id] = deployment
                deployments.append(deployment)
            priorities = sorted({d.priority for d in deployments})
            group = ModelGroup(
                name=mid,
                config=mcfg,
                deployments=deployments,
                tiers=[[d for d in deployments if d.priority == p] for p in priorities],
                strategy=mcfg.strategy,
                fallbacks=tuple(mcfg.fallbacks),
                context_window_fallbacks=tuple(mcfg.context_window_fallbacks),
                content_filter_fallbacks=tuple(mcfg.content_filter_fallbacks),
                hedge=mcfg.hedge,
                hedge_after_ms=mcfg.hedge_after_ms,
                sticky=mcfg.sticky,
                retries=mcfg.retries,
            )
            out.groups[mid] = group
        for alias, target in table.aliases.items():
            if target in out.groups:
                out.groups[alias] = out.groups[target]
        return out

    def group(self, name: str) -> ModelGroup | None:
        return self.groups.get(name)

    def for_route(self, route: Route) -> Deployment:
        """The deployment behind a model-table route that is no configured group."""
        key = (route.provider_id, route.upstream_model)
        deployment = self.adhoc.get(key)
        if deployment is None:
            config = self.config
            ptype = (
                config.providers[route.provider_id].type if config and route.provider_id in config.providers else None
            )
            breaker = config.routing.breaker if config is not None and route.provider_id != "demo" else None
            deployment = adhoc_deployment(route.provider_id, ptype or route.provider_id, route.upstream_model, breaker)
            if config is not None:  # as the model listing and the capability check see this name
                deployment.capabilities = capabilities_for(config, self.aliases, route)
            if len(self.adhoc) < MAX_ADHOC:
                self.adhoc[key] = deployment
        return deployment

    def all(self) -> list[Deployment]:
        """Configured deployments, then ad-hoc ones that have seen traffic."""
        return [*self.by_id.values(), *self.adhoc.values()]


def _unique(name: str, taken: dict[str, Deployment]) -> str:
    # Two groups may use the same provider/model (e.g. as a primary in one and a fallback tier in
    # another); each keeps its own limits, so each is its own deployment with a distinct id.
    if name not in taken:
        return name
    n = 2
    while f"{name}#{n}" in taken:
        n += 1
    return f"{name}#{n}"
