"""Keeping a deployment's failures from becoming the client's: retry rules and backoff, the circuit
breaker, passive statistics, backpressure (concurrency, queue, rpm/tpm) and health with active probes.

Everything here is per deployment and per process, driven by injected clocks, and does no I/O of its
own (the probe loop calls the probe it is given); omen/routing wires it into requests.
"""

from omen.resilience.backoff import RETRYABLE_STATUSES, backoff_delay, is_retryable, retry_after_s
from omen.resilience.breaker import CircuitBreaker
from omen.resilience.health import HEALTH_SCORE, ProbeLoop, health_state
from omen.resilience.limiter import DeploymentLimiter
from omen.resilience.stats import DeploymentStats

__all__ = [
    "HEALTH_SCORE",
    "RETRYABLE_STATUSES",
    "CircuitBreaker",
    "DeploymentLimiter",
    "DeploymentStats",
    "ProbeLoop",
    "backoff_delay",
    "health_state",
    "is_retryable",
    "retry_after_s",
]
