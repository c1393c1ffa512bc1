"""A deployment at run time: one provider + upstream model serving a public model, with the state the
router reads (traffic statistics, circuit breaker, concurrency/rate limiter) and what the catalog knows
about it (capabilities, prices).

Deployments are built once at startup (``omen.routing.groups``) and live as long as the gateway; their
state is per worker process. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from omen.catalog.capabilities import Capabilities, lookup
from omen.config.schema import BreakerConfig, DeploymentConfig, OmenConfig, RoutingConfig
from omen.resilience.breaker import CircuitBreaker
from omen.resilience.health import health_state
from omen.resilience.limiter import DeploymentLimiter
from omen.resilience.stats import DeploymentStats


@dataclass(slots=True, eq=False)
class Deployment:
    id: str  # "<provider>/<upstream model>" unless configured; unique within the gateway
    provider_id: str
    provider_type: str
    upstream_model: str
    weight: float = 1.0
    priority: int = 1
    capabilities: Capabilities = field(default_factory=Capabilities)
    stats: DeploymentStats = field(default_factory=DeploymentStats)
    breaker: CircuitBreaker | None = None
    limiter: DeploymentLimiter | None = None  # None: no limits configured, nothing to wait for

    @property
    def local(self) -> bool:
        """Served on the operator's own hardware (Ollama): what ``prefer_local_for`` looks for."""
        return self.provider_type == "ollama"

    def health(self) -> str:
        return health_state(self.breaker, self.stats)

    def saturated(self) -> bool:
        return self.limiter is not None and self.limiter.saturated()

    def free_capacity(self) -> float:
        return 1.0 if self.limiter is None else self.limiter.free_capacity()

    def breaker_state(self) -> str:
        return "closed" if self.breaker is None else self.breaker.state

    def cost(self, prompt_tokens: int, output_tokens: int) -> float | None:
        """USD for a request of that size, from the catalog/config prices; None when unknown."""
        pricing = self.capabilities.pricing
        if pricing is None or pricing.input is None:
            return None
        out = pricing.output if pricing.output is not None else pricing.input
        return (prompt_tokens * pricing.input + output_tokens * out) / 1_000_000

    def snapshot(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "provider": self.provider_id,
            "upstream_model": self.upstream_model,
            "weight": self.weight,
            "priority": self.priority,
            "health": self.health(),
            "stats": self.stats.snapshot(),
        }
        if self.breaker is not None:
            out["breaker"] = self.breaker.snapshot()
        if self.limiter is not None:
            out["limiter"] = self.limiter.snapshot()
        return out


def _limiter(d: DeploymentConfig, routing: RoutingConfig, name: str) -> DeploymentLimiter | None:
    if d.max_concurrent is None and d.rpm is None and d.tpm is None:
        return None
    max_queue = d.max_queue if d.max_queue is not None else (d.max_concurrent or 0)
    timeout = d.queue_timeout_s if d.queue_timeout_s is not None else routing.queue_timeout_s
    return DeploymentLimiter(d.max_concurrent, max_queue, timeout, d.rpm, d.tpm, id=name)


def build_deployment(
    d: DeploymentConfig,
    public_model: str,
    config: OmenConfig,
    provider_types: dict[str, str],
    capabilities: Callable[[str, str], Capabilities],
) -> Deployment:
    upstream = d.model or public_model
    name = d.id or f"{d.provider}/{upstream}"
    return Deployment(
        id=name,
        provider_id=d.provider,
        provider_type=provider_types.get(d.provider, d.provider),
        upstream_model=upstream,
        weight=d.weight,
        priority=d.priority,
        capabilities=capabilities(public_model, upstream),
        breaker=CircuitBreaker(config.routing.breaker),
        limiter=_limiter(d, config.routing, name),
    )


def adhoc_deployment(
    provider_id: str, provider_type: str, upstream_model: str, breaker: BreakerConfig | None
) -> Deployment:
    """A deployment for a name that is no configured model (``<provider>/<model>``, discovered, a
    model family): no limits, catalog capabilities of the upstream model."""
    return Deployment(
        id=f"{provider_id}/{upstream_model}",
        provider_id=provider_id,
        provider_type=provider_type,
        upstream_model=upstream_model,
        capabilities=lookup(upstream_model),
        breaker=CircuitBreaker(breaker) if breaker is not None else None,
    )
