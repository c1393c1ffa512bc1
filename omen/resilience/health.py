"""Health of a deployment as the status page and the ``score`` strategy see it, and the active probe
loop that keeps it fresh when traffic is light.

``health_state(breaker, stats)``, first rule that holds:

- ``down``: the breaker is open, or the stats window holds at least ``DOWN_MIN_FAILURES`` failures
  and no success (nothing has worked lately, even if too few requests came to trip the breaker);
- ``degraded``: the breaker is half-open (recovering, on probation); or at least
  ``DEGRADED_MIN_REQUESTS`` requests in the window failed more than ``DEGRADED_ERROR_RATE`` (10 %)
  of the time; or it answers much slower than usual: the recent time to first token (total latency
  when there is no first-token figure) is over ``SLOW_FACTOR`` (3x) its long-run baseline and at
  least ``SLOW_MARGIN_MS`` (500 ms) above it, with ``SLOW_MIN_SAMPLES`` (20) samples behind the
  baseline (the margin keeps a 5 ms -> 20 ms blip on a local model from counting);
- ``operational`` otherwise.

``HEALTH_SCORE`` turns the state into the 0..1 ``health`` input of the scoring function.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable
from typing import Generic, TypeVar

import trio

from omen.config.schema import HealthConfig
from omen.resilience.breaker import HALF_OPEN, OPEN, CircuitBreaker
from omen.resilience.stats import DeploymentStats

log = logging.getLogger("omen.resilience.health")

OPERATIONAL = "operational"
DEGRADED = "degraded"
DOWN = "down"
HEALTH_SCORE: dict[str, float] = {OPERATIONAL: 1.0, DEGRADED: 0.5, DOWN: 0.0}

DOWN_MIN_FAILURES = 3
DEGRADED_ERROR_RATE = 0.1
DEGRADED_MIN_REQUESTS = 5
SLOW_FACTOR = 3.0
SLOW_MARGIN_MS = 500.0
SLOW_MIN_SAMPLES = 20


def slower_than_usual(stats: DeploymentStats) -> bool:
    """Recent latency far above the deployment's own baseline (see the module docstring)."""
    if stats.ttft_count >= SLOW_MIN_SAMPLES:
        recent, baseline = stats.ewma_ttft_ms, stats.baseline_ttft_ms
    elif stats.latency_samples >= SLOW_MIN_SAMPLES:
        recent, baseline = stats.ewma_latency_ms, stats.baseline_latency_ms
    else:
        return False
    if recent is None or baseline is None:
        return False
    return recent > SLOW_FACTOR * baseline and recent - baseline > SLOW_MARGIN_MS


def health_state(breaker: CircuitBreaker | None, stats: DeploymentStats) -> str:
    """ "operational" | "degraded" | "down" (rules in the module docstring)."""
    breaker_state = breaker.state if breaker is not None else None
    if breaker_state == OPEN:
        return DOWN
    total, errors = stats.window_counts()
    if errors >= DOWN_MIN_FAILURES and errors == total:
        return DOWN
    if breaker_state == HALF_OPEN:
        return DEGRADED
    if total >= DEGRADED_MIN_REQUESTS and errors / total > DEGRADED_ERROR_RATE:
        return DEGRADED
    if slower_than_usual(stats):
        return DEGRADED
    return OPERATIONAL


T = TypeVar("T", bound=Hashable)
Probe = Callable[[T], Awaitable[tuple[bool, float]]]


class ProbeLoop(Generic[T]):
    """Active health probes: each target on its own schedule, forever, in the caller's nursery.

    ``probe(target)`` returns ``(ok, latency_s)``; it runs under its own cancel scope of
    ``probe_timeout_s`` (a probe that hangs is a failed probe with latency = the timeout) and an
    exception from it is a failed probe too, never the end of the loop. Every result goes to
    ``on_result(target, ok, latency_s)``.

    Schedules: the first probe of each target comes at a random point of the first interval, then
    every ``probe_interval_s`` +- ``jitter`` (a share of the interval), so targets and worker processes
    spread out instead of probing in step. ``probe_interval_s <= 0`` means passive health only:
    ``run`` returns at once.
    """

    def __init__(
        self,
        on_result: Callable[[T, bool, float], object],
        rng: random.Random | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._on_result = on_result
        self._rng = rng or random.Random()
        self._wall = wall
        self.last: dict[T, tuple[bool, float, float]] = {}  # target -> (ok, latency_s, Unix time)
        self.probes = 0

    def next_delay(self, config: HealthConfig) -> float:
        jitter = min(max(config.jitter, 0.0), 0.99)
        return config.probe_interval_s * self._rng.uniform(1.0 - jitter, 1.0 + jitter)

    async def run(self, targets: Iterable[T], config: HealthConfig, probe: Probe[T]) -> None:
        if config.probe_interval_s <= 0:
            return
        async with trio.open_nursery() as nursery:
            for target in targets:
                nursery.start_soon(self._forever, target, config, probe)

    async def _forever(self, target: T, config: HealthConfig, probe: Probe[T]) -> None:
        await trio.sleep(self._rng.uniform(0.0, config.probe_interval_s))
        while True:
            ok, latency_s = await self.probe_once(target, config, probe)
            self.last[target] = (ok, latency_s, self._wall())
            self.probes += 1
            try:
                self._on_result(target, ok, latency_s)
            except Exception:  # a bad recorder must not stop every later probe of this target
                log.exception("health probe result for %r could not be recorded", target)
            await trio.sleep(self.next_delay(config))

    async def probe_once(self, target: T, config: HealthConfig, probe: Probe[T]) -> tuple[bool, float]:
        started = trio.current_time()
        with trio.move_on_after(config.probe_timeout_s) as scope:
            try:
                ok, latency_s = await probe(target)
            except Exception as exc:  # any failure of the probe means "not healthy"
                log.debug("health probe of %r failed: %r", target, exc)
                return False, trio.current_time() - started
            return bool(ok), float(latency_s)
        assert scope.cancelled_caught
        return False, float(config.probe_timeout_s)
