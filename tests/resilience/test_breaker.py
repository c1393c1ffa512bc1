"""Circuit breaker state machine under a hand-driven clock (omen/resilience/breaker.py)."""

from __future__ import annotations

import pytest

from omen.config.schema import BreakerConfig
from omen.resilience.breaker import CircuitBreaker
from tests.resilience.clocks import FakeClock

CONFIG = BreakerConfig(window_s=30.0, min_requests=10, error_rate=0.5, cooldown_s=20.0, half_open_probes=2)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def wall() -> FakeClock:
    return FakeClock(1_800_000_000.0)


def make(clock: FakeClock, wall: FakeClock, config: BreakerConfig = CONFIG) -> CircuitBreaker:
    return CircuitBreaker(config, clock=clock, wall=wall)


def feed(breaker: CircuitBreaker, clock: FakeClock, outcomes: str, step: float = 0.1) -> None:
    """'.' = success, 'x' = failure, one every ``step`` seconds, each allowed first."""
    for ch in outcomes:
        assert breaker.allow()
        breaker.record(ch == ".")
        clock.advance(step)


def open_it(breaker: CircuitBreaker, clock: FakeClock) -> None:
    """Open it with failures all at the current time (so it opened "now")."""
    feed(breaker, clock, "x" * CONFIG.min_requests, step=0.0)
    assert breaker.state == "open"


def test_starts_closed_and_allows(clock, wall):
    b = make(clock, wall)
    assert b.state == "closed"
    assert b.allow()
    assert b.changed_at == wall.now


def test_no_verdict_below_min_requests(clock, wall):
    b = make(clock, wall)
    feed(b, clock, "x" * 9)
    assert b.state == "closed"
    assert b.allow()


def test_opens_exactly_at_the_error_rate_threshold(clock, wall):
    b = make(clock, wall)
    feed(b, clock, "....." + "xxxx")  # 9 requests, 4/9 failed
    assert b.state == "closed"
    feed(b, clock, "x")  # 10 requests, 5/10 = 0.5 >= 0.5
    assert b.state == "open"
    assert not b.allow()
    assert b.opens == 1
    assert b.last_open_error_rate == 0.5


def test_stays_closed_below_the_error_rate(clock, wall):
    b = make(clock, wall)
    feed(b, clock, "......xxxx" * 3)  # 40 % failures
    assert b.state == "closed"


def test_old_failures_leave_the_window(clock, wall):
    b = make(clock, wall)
    feed(b, clock, "xxxxxxxxx")  # 9 failures, not enough requests yet
    clock.advance(CONFIG.window_s + 2)  # ... and now they are out of the window
    feed(b, clock, "x")
    assert b.state == "closed"
    assert b.snapshot()["window_requests"] == 1


def test_open_until_cooldown_then_half_open(clock, wall):
    b = make(clock, wall)
    open_it(b, clock)
    clock.advance(CONFIG.cooldown_s - 0.5)
    assert not b.allow()
    assert b.retry_in_s() == pytest.approx(0.5)
    clock.advance(0.5)
    assert b.state == "half_open"
    assert b.retry_in_s() == 0.0


def test_half_open_transition_time_is_when_the_cooldown_ended(clock, wall):
    b = make(clock, wall)
    open_it(b, clock)
    clock.advance(CONFIG.cooldown_s + 7)  # nobody looked for 7 s after the cooldown ended
    assert b.state == "half_open"
    assert b.changed_at == pytest.approx(wall.now - 7)


def test_half_open_admits_only_the_probes_then_closes_on_success(clock, wall):
    b = make(clock, wall)
    open_it(b, clock)
    clock.advance(CONFIG.cooldown_s)
    assert b.allow()
    assert b.allow()
    assert not b.allow()  # two probes in flight: the third waits
    b.record(True)
    assert b.state == "half_open"
    assert not b.allow()  # one success and one in flight fill the two probes
    b.record(True)
    assert b.state == "closed"
    snap = b.snapshot()
    assert snap["window_requests"] == 0  # window cleared: old failures do not count any more
    feed(b, clock, "x" * 9)
    assert b.state == "closed"


def test_failed_probe_reopens_and_restarts_the_cooldown(clock, wall):
    b = make(clock, wall)
    open_it(b, clock)
    clock.advance(CONFIG.cooldown_s)
    assert b.allow() and b.allow()
    b.record(True)
    clock.advance(3)
    b.record(False)
    assert b.state == "open"
    assert b.opens == 2
    clock.advance(CONFIG.cooldown_s - 0.1)
    assert not b.allow()
    clock.advance(0.1)
    assert b.allow()
    assert b.state == "half_open"


def test_release_probe_frees_a_probe_slot(clock, wall):
    b = make(clock, wall)
    open_it(b, clock)
    clock.advance(CONFIG.cooldown_s)
    assert b.allow() and b.allow()
    assert not b.allow()
    b.release_probe()  # that request never reached the deployment
    assert b.snapshot()["probes_in_flight"] == 1
    assert b.allow()
    b.release_probe()
    b.release_probe()
    b.release_probe()  # more releases than probes: no negative count
    assert b.snapshot()["probes_in_flight"] == 0


def test_release_probe_is_harmless_when_closed(clock, wall):
    b = make(clock, wall)
    b.release_probe()
    assert b.state == "closed"


def test_outcomes_while_open_are_ignored(clock, wall):
    b = make(clock, wall)
    open_it(b, clock)
    for _ in range(50):
        b.record(True)  # late results of requests admitted before it opened
    assert b.state == "open"
    clock.advance(CONFIG.cooldown_s)
    assert b.state == "half_open"


def test_single_probe_config(clock, wall):
    config = BreakerConfig(window_s=10, min_requests=2, error_rate=1.0, cooldown_s=5, half_open_probes=1)
    b = make(clock, wall, config)
    feed(b, clock, "x.")
    assert b.state == "closed"  # 1 of 2 failed, under 1.0
    clock.advance(11)  # both leave the window
    feed(b, clock, "xx")
    assert b.state == "open"  # 2 of 2
    clock.advance(5)
    assert b.allow()
    assert not b.allow()  # one probe only
    b.record(True)
    assert b.state == "closed"


def test_changed_at_follows_transitions(clock, wall):
    b = make(clock, wall)
    created = b.changed_at
    wall.advance(5)
    open_it(b, clock)
    assert b.changed_at == created + 5
    snap = b.snapshot()
    assert snap["state"] == "open"
    assert snap["retry_in_s"] == pytest.approx(CONFIG.cooldown_s)
    assert snap["error_rate"] == 1.0


def test_deterministic_under_the_same_clock():
    def run() -> list[str]:
        clock, wall = FakeClock(), FakeClock()
        b = make(clock, wall)
        states = []
        for i in range(200):
            clock.advance(0.7)
            if b.allow():
                b.record(i % 7 not in (1, 2, 3, 4))
            states.append(b.state)
        return states

    first = run()
    assert first == run()
    assert {"closed", "open", "half_open"} <= set(first)
