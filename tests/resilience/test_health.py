"""health_state rules and the active probe loop (omen/resilience/health.py).

The probe loop runs as real trio tasks on trio's mock clock (``autojump_clock``), so schedules and
timeouts are exact mock-clock times and take no real time.
"""

from __future__ import annotations

import itertools
import random

import pytest
import trio

from omen.config.schema import BreakerConfig, HealthConfig
from omen.resilience.breaker import CircuitBreaker
from omen.resilience.health import (
    DEGRADED,
    DOWN,
    HEALTH_SCORE,
    OPERATIONAL,
    SLOW_MIN_SAMPLES,
    ProbeLoop,
    health_state,
)
from omen.resilience.stats import DeploymentStats
from tests.resilience.clocks import FakeClock

BREAKER = BreakerConfig(window_s=30, min_requests=10, error_rate=0.5, cooldown_s=20, half_open_probes=1)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def pair(clock: FakeClock) -> tuple[CircuitBreaker, DeploymentStats]:
    return CircuitBreaker(BREAKER, clock=clock), DeploymentStats(clock)


def outcome(breaker: CircuitBreaker, stats: DeploymentStats, ok: bool, ttft_s: float = 0.1) -> None:
    breaker.allow()
    breaker.record(ok)
    stats.observe(ok, ttft_s, ttft_s * 2)


# ---- health_state ---------------------------------------------------------------------------------


def test_fresh_deployment_is_operational(clock):
    breaker, stats = pair(clock)
    assert health_state(breaker, stats) == OPERATIONAL
    assert health_state(None, stats) == OPERATIONAL


def test_open_breaker_is_down(clock):
    breaker, stats = pair(clock)
    for _ in range(10):
        outcome(breaker, stats, False)
    assert breaker.state == "open"
    assert health_state(breaker, stats) == DOWN


def test_half_open_breaker_is_degraded(clock):
    breaker, stats = pair(clock)
    for i in range(10):
        outcome(breaker, stats, i % 2 == 0)  # half fail: opens, but successes stay in the window
    clock.advance(BREAKER.cooldown_s)
    assert breaker.state == "half_open"
    assert health_state(breaker, stats) == DEGRADED


def test_failures_without_any_success_are_down_before_the_breaker_trips(clock):
    breaker, stats = pair(clock)
    for _ in range(2):
        outcome(breaker, stats, False)
    assert health_state(breaker, stats) == OPERATIONAL  # 2 failures: too few for any verdict
    outcome(breaker, stats, False)
    assert breaker.state == "closed"
    assert health_state(breaker, stats) == DOWN
    outcome(breaker, stats, True)
    assert health_state(breaker, stats) != DOWN


def test_error_rate_over_ten_percent_is_degraded(clock):
    breaker, stats = pair(clock)
    for i in range(20):
        outcome(breaker, stats, i not in (3, 11))  # exactly 10 %: still operational
    assert health_state(breaker, stats) == OPERATIONAL
    outcome(breaker, stats, False)  # 3 of 21
    assert health_state(breaker, stats) == DEGRADED
    clock.advance(61)  # the window forgets
    assert health_state(breaker, stats) == OPERATIONAL


def test_much_slower_than_usual_is_degraded(clock):
    breaker, stats = pair(clock)
    for _ in range(SLOW_MIN_SAMPLES + 10):
        outcome(breaker, stats, True, ttft_s=0.2)
    assert health_state(breaker, stats) == OPERATIONAL
    for _ in range(8):
        outcome(breaker, stats, True, ttft_s=3.0)
    assert stats.ewma_ttft_ms > 3 * stats.baseline_ttft_ms
    assert health_state(breaker, stats) == DEGRADED


def test_a_small_absolute_slowdown_is_not_degraded(clock):
    breaker, stats = pair(clock)
    for _ in range(SLOW_MIN_SAMPLES + 10):
        outcome(breaker, stats, True, ttft_s=0.005)
    for _ in range(10):
        outcome(breaker, stats, True, ttft_s=0.05)  # 10x slower, but 45 ms
    assert health_state(breaker, stats) == OPERATIONAL


def test_health_score_mapping():
    assert HEALTH_SCORE == {OPERATIONAL: 1.0, DEGRADED: 0.5, DOWN: 0.0}


# ---- ProbeLoop ------------------------------------------------------------------------------------


async def test_probes_each_target_on_its_own_schedule(autojump_clock):
    results: list[tuple[str, bool, float, float]] = []
    loop: ProbeLoop[str] = ProbeLoop(
        lambda t, ok, lat: results.append((t, ok, lat, trio.current_time())), random.Random(3)
    )
    config = HealthConfig(probe_interval_s=10, probe_timeout_s=2, jitter=0.0)

    async def probe(target: str) -> tuple[bool, float]:
        await trio.sleep(0.5)
        return target != "bad", 0.5

    start = trio.current_time()
    with trio.move_on_after(100.05):
        await loop.run(["a", "bad"], config, probe)
    for target in ("a", "bad"):
        times = [t - start for name, _, _, t in results if name == target]
        assert 0.5 <= times[0] < 10.5  # first probe somewhere in the first interval
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert gaps == pytest.approx([10.5] * len(gaps))  # interval + the probe's own 0.5 s
        assert len(times) >= 9
    assert {ok for name, ok, _, _ in results if name == "a"} == {True}
    assert {ok for name, ok, _, _ in results if name == "bad"} == {False}
    assert loop.last["a"][:2] == (True, 0.5)


async def test_jitter_spreads_the_intervals(autojump_clock):
    times: list[float] = []
    loop: ProbeLoop[str] = ProbeLoop(lambda t, ok, lat: times.append(trio.current_time()), random.Random(11))
    config = HealthConfig(probe_interval_s=10, probe_timeout_s=1, jitter=0.2)

    async def probe(target: str) -> tuple[bool, float]:
        return True, 0.0

    with trio.move_on_after(500):
        await loop.run(["x"], config, probe)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(8.0 <= g <= 12.0 for g in gaps)
    assert len({round(g, 6) for g in gaps}) > len(gaps) // 2  # not all the same


async def test_a_hanging_probe_times_out_as_a_failure(autojump_clock):
    results: list[tuple[str, bool, float]] = []
    loop: ProbeLoop[str] = ProbeLoop(lambda t, ok, lat: results.append((t, ok, lat)), random.Random(1))
    config = HealthConfig(probe_interval_s=5, probe_timeout_s=1.5, jitter=0.0)

    async def probe(target: str) -> tuple[bool, float]:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    with trio.move_on_after(30):
        await loop.run(["hang"], config, probe)
    assert results
    assert all(r == ("hang", False, 1.5) for r in results)


async def test_a_raising_probe_or_recorder_does_not_stop_the_loop(autojump_clock):
    calls: list[str] = []

    def record(target: str, ok: bool, latency: float) -> None:
        calls.append(target)
        if target == "r":
            raise RuntimeError("recorder broke")

    loop: ProbeLoop[str] = ProbeLoop(record, random.Random(2))
    config = HealthConfig(probe_interval_s=1, probe_timeout_s=0.5, jitter=0.1)

    async def probe(target: str) -> tuple[bool, float]:
        if target == "p":
            raise ConnectionError("refused")
        return True, 0.01

    with trio.move_on_after(20):
        await loop.run(["p", "r"], config, probe)
    assert calls.count("p") >= 15
    assert calls.count("r") >= 15
    assert loop.last["p"][0] is False


async def test_interval_zero_means_passive_only(autojump_clock):
    loop: ProbeLoop[str] = ProbeLoop(lambda *a: None)

    async def probe(target: str) -> tuple[bool, float]:
        raise AssertionError("must not probe")

    start = trio.current_time()
    await loop.run(["a"], HealthConfig(probe_interval_s=0), probe)
    assert trio.current_time() == start
