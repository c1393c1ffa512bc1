"""Passive deployment statistics under a hand-driven clock (omen/resilience/stats.py)."""

from __future__ import annotations

import pytest

from omen.resilience.stats import ALPHA, BASELINE_ALPHA, SAMPLES, WINDOW_S, DeploymentStats
from tests.resilience.clocks import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_unknown_before_any_sample(clock):
    s = DeploymentStats(clock)
    assert s.ewma_ttft_ms is None
    assert s.ewma_latency_ms is None
    assert s.p95_ttft_ms() is None
    assert s.error_rate == 0.0
    assert s.success_rate == 1.0
    assert s.in_flight == 0
    assert s.requests == 0


def test_ewma_starts_at_the_first_sample_then_moves_by_alpha(clock):
    s = DeploymentStats(clock)
    s.start()
    s.finish(True, 0.100, 1.000)
    assert s.ewma_ttft_ms == pytest.approx(100.0)
    assert s.ewma_latency_ms == pytest.approx(1000.0)
    s.start()
    s.finish(True, 0.200, 2.000)
    assert s.ewma_ttft_ms == pytest.approx(100.0 + ALPHA * 100.0)
    assert s.ewma_latency_ms == pytest.approx(1000.0 + ALPHA * 1000.0)
    assert s.baseline_ttft_ms == pytest.approx(100.0 + BASELINE_ALPHA * 100.0)


def test_ewma_converges_to_a_new_level(clock):
    s = DeploymentStats(clock)
    for _ in range(5):
        s.observe(True, 0.05, 0.5)
    for _ in range(30):
        s.observe(True, 0.5, 2.0)
    assert s.ewma_ttft_ms == pytest.approx(500.0, rel=0.01)
    assert s.baseline_ttft_ms < 300.0  # the slow baseline still remembers the old level


def test_failures_do_not_move_latency(clock):
    s = DeploymentStats(clock)
    s.observe(True, 0.3, 1.0)
    s.observe(False, 0.001, 0.002)  # an instant 500 must not make the deployment look fast
    assert s.ewma_ttft_ms == pytest.approx(300.0)
    assert s.ewma_latency_ms == pytest.approx(1000.0)
    assert s.p95_ttft_ms() == pytest.approx(300.0)


def test_missing_or_bad_ttft_is_skipped(clock):
    s = DeploymentStats(clock)
    s.observe(True, None, 1.0)
    s.observe(True, float("nan"), 1.0)
    s.observe(True, -1.0, float("inf"))
    assert s.ewma_ttft_ms is None
    assert s.ttft_count == 0
    assert s.latency_samples == 2
    assert s.ewma_latency_ms == pytest.approx(1000.0)


def test_in_flight_counter(clock):
    s = DeploymentStats(clock)
    s.start()
    s.start()
    assert s.in_flight == 2
    s.finish(True, 0.1, 0.2)
    assert s.in_flight == 1
    assert s.requests == 1
    s.finish(False, None, 0.2)
    s.finish(False, None, 0.2)  # an unmatched finish does not go negative
    assert s.in_flight == 0
    s.observe(True, 0.1, 0.1)  # probes are not in flight
    assert s.in_flight == 0
    assert s.requests == 4


def test_error_rate_over_a_sliding_window(clock):
    s = DeploymentStats(clock)
    for ok in [True] * 6 + [False] * 4:
        s.observe(ok, 0.1, 0.2)
        clock.advance(1)
    assert s.error_rate == pytest.approx(0.4)
    assert s.success_rate == pytest.approx(0.6)
    clock.advance(WINDOW_S + 5)  # everything has left the window
    assert s.error_rate == 0.0
    assert s.success_rate == 1.0
    assert s.window_counts() == (0, 0)
    s.observe(False, None, 0.1)
    assert s.error_rate == 1.0
    assert (s.successes, s.failures) == (6, 5)  # lifetime counters stay


def test_p95_nearest_rank(clock):
    s = DeploymentStats(clock)
    for ms in range(1, 101):
        s.observe(True, ms / 1000.0, 1.0)
    assert s.p95_ttft_ms() == pytest.approx(95.0)
    t = DeploymentStats(clock)
    t.observe(True, 0.042, 0.1)
    assert t.p95_ttft_ms() == pytest.approx(42.0)


def test_p95_sample_is_bounded_to_the_latest(clock):
    s = DeploymentStats(clock)
    for _ in range(SAMPLES):
        s.observe(True, 10.0, 10.0)  # very slow, long ago
    for ms in range(1, SAMPLES + 1):
        s.observe(True, ms / 1000.0, 1.0)
    assert s.p95_ttft_ms() == pytest.approx(SAMPLES * 0.95)


def test_snapshot(clock):
    s = DeploymentStats(clock)
    s.start()
    s.observe(True, 0.25, 0.5)
    s.observe(False, None, 0.5)
    snap = s.snapshot()
    assert snap["in_flight"] == 1
    assert snap["requests"] == 2
    assert snap["window_requests"] == 2
    assert snap["window_errors"] == 1
    assert snap["error_rate"] == 0.5
    assert snap["success_rate"] == 0.5
    assert snap["ewma_ttft_ms"] == pytest.approx(250.0)
    assert snap["p95_ttft_ms"] == pytest.approx(250.0)
