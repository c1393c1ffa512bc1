"""Backpressure with real trio tasks on trio's mock clock (omen/resilience/limiter.py).

``autojump_clock`` (pytest-trio) jumps to the next deadline whenever every task is blocked, so queue
timeouts and token refills take no real time and the times asserted are exact mock-clock times.
"""

from __future__ import annotations

import random
from contextlib import AsyncExitStack

import pytest
import trio

from omen.errors import OmenError
from omen.resilience.limiter import DeploymentLimiter
from tests.resilience.clocks import FakeClock


async def hold(limiter: DeploymentLimiter, seconds: float, log: list[str] | None = None, name: str = "") -> None:
    async with limiter.slot():
        if log is not None:
            log.append(name)
        await trio.sleep(seconds)


async def test_no_limits_never_wait(autojump_clock):
    lim = DeploymentLimiter(id="open")
    start = trio.current_time()
    async with AsyncExitStack() as stack:
        for _ in range(100):
            await stack.enter_async_context(lim.slot(tokens=10_000))
        assert lim.in_use == 100
        assert lim.free_capacity() == 1.0
        assert not lim.saturated()
    assert lim.in_use == 0
    assert trio.current_time() == start


async def test_waiters_get_slots_in_arrival_order(autojump_clock):
    lim = DeploymentLimiter(max_concurrent=1, max_queue=10, queue_timeout_s=100, id="d")
    order: list[str] = []
    async with trio.open_nursery() as nursery:
        for name in "ABCDE":
            nursery.start_soon(hold, lim, 1.0, order, name)
            await trio.sleep(0.01)  # arrival order A, B, C, D, E
    assert order == list("ABCDE")
    assert lim.in_use == 0
    assert lim.queued == 0


async def test_a_released_slot_goes_to_the_waiter_not_a_newcomer(autojump_clock):
    lim = DeploymentLimiter(max_concurrent=1, max_queue=10, queue_timeout_s=100, id="d")
    order: list[str] = []

    async def first() -> None:
        async with lim.slot():
            await trio.sleep(1)
        # B owns the slot already although it has not run yet: the count never dropped.
        assert (lim.in_use, lim.queued) == (1, 0)
        async with lim.slot():  # coming straight back, A queues behind B
            order.append("A again")

    async def second() -> None:
        await trio.sleep(0.1)
        async with lim.slot():
            order.append("B")
            await trio.sleep(1)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(first)
        nursery.start_soon(second)
    assert order == ["B", "A again"]


async def test_many_tasks_never_exceed_the_limit_and_keep_order(autojump_clock):
    lim = DeploymentLimiter(max_concurrent=3, max_queue=100, queue_timeout_s=1000, id="d")
    rng = random.Random(5)
    running = peak = 0
    order: list[int] = []

    async def user(i: int, seconds: float) -> None:
        nonlocal running, peak
        async with lim.slot():
            order.append(i)
            running += 1
            peak = max(peak, running)
            await trio.sleep(seconds)
            running -= 1

    async with trio.open_nursery() as nursery:
        for i in range(50):
            nursery.start_soon(user, i, rng.uniform(0.1, 3.0))
            await trio.sleep(0.001)
    assert peak == 3
    assert order == list(range(50))
    assert lim.snapshot()["admitted"] == 50


async def test_cancelled_waiter_leaves_the_queue(autojump_clock):
    lim = DeploymentLimiter(max_concurrent=1, max_queue=5, queue_timeout_s=100, id="d")
    got: list[str] = []
    release = trio.Event()
    w1_scope = trio.CancelScope()

    async def holder() -> None:
        async with lim.slot():
            await release.wait()

    async def waiter(name: str, scope: trio.CancelScope | None = None) -> None:
        with scope or trio.CancelScope():
            async with lim.slot():
                got.append(name)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(holder)
        await trio.sleep(0.1)
        nursery.start_soon(waiter, "w1", w1_scope)
        await trio.sleep(0.1)
        nursery.start_soon(waiter, "w2")
        await trio.sleep(0.1)
        assert lim.queued == 2
        w1_scope.cancel()
        await trio.sleep(0.1)
        assert lim.queued == 1  # w1 is gone from the queue
        release.set()
    assert got == ["w2"]
    assert (lim.in_use, lim.queued) == (0, 0)


async def test_queue_full_is_429_with_retry_after(autojump_clock):
    lim = DeploymentLimiter(max_concurrent=1, max_queue=1, queue_timeout_s=100, id="azure-eu/gpt4o")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(hold, lim, 10)
        nursery.start_soon(hold, lim, 10)
        await trio.sleep(0.1)
        assert (lim.in_use, lim.queued) == (1, 1)
        assert lim.saturated()
        with pytest.raises(OmenError) as info:
            async with lim.slot():
                pass
    e = info.value
    assert e.status == 429
    assert e.code == "deployment_queue_full"
    assert int(e.headers["Retry-After"]) >= 1
    assert "azure-eu/gpt4o" in e.message
    assert "max_concurrent=1" in e.message and "max_queue=1" in e.message
    assert lim.snapshot()["rejected_queue_full"] == 1


async def test_queue_full_retry_after_follows_the_hold_time(autojump_clock):
    lim = DeploymentLimiter(max_concurrent=2, max_queue=1, queue_timeout_s=100, clock=trio.current_time, id="d")
    for _ in range(2):
        await hold(lim, 10)  # slots are held 10 s each
    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(hold, lim, 10)
        await trio.sleep(0.1)
        with pytest.raises(OmenError) as info:
            async with lim.slot():
                pass
    # one waiting + this one, served two at a time, 10 s each
    assert info.value.headers == {"Retry-After": "10"}


async def test_queue_timeout_is_503_with_retry_after(autojump_clock):
    lim = DeploymentLimiter(max_concurrent=1, max_queue=1, queue_timeout_s=5, id="ollama-2")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(hold, lim, 100)
        await trio.sleep(0.1)
        start = trio.current_time()
        with pytest.raises(OmenError) as info:
            async with lim.slot():
                pass
        assert trio.current_time() - start == pytest.approx(5)
        assert lim.queued == 0
        nursery.cancel_scope.cancel()
    e = info.value
    assert e.status == 503
    assert e.code == "deployment_queue_timeout"
    assert "ollama-2" in e.message and "queue timeout of 5s" in e.message
    assert int(e.headers["Retry-After"]) >= 1
    assert lim.timed_out == 1


async def test_zero_queue_refuses_at_once(autojump_clock):
    lim = DeploymentLimiter(max_concurrent=1, max_queue=0, id="d")
    async with lim.slot():
        assert lim.saturated()
        with pytest.raises(OmenError) as info:
            async with lim.slot():
                pass
    assert info.value.status == 429


async def test_rpm_budget(autojump_clock):
    lim = DeploymentLimiter(rpm=60, clock=trio.current_time, id="openai/gpt-4o")
    for _ in range(60):
        async with lim.slot():
            pass
    assert lim.saturated()
    with pytest.raises(OmenError) as info:
        async with lim.slot():
            pass
    e = info.value
    assert (e.status, e.code) == (429, "rate_limit_exceeded")
    assert e.headers == {"Retry-After": "1"}
    assert "openai/gpt-4o" in e.message and "60 requests per minute" in e.message
    await trio.sleep(float(e.headers["Retry-After"]))
    async with lim.slot():
        pass
    assert lim.snapshot()["rejected_rate"] == 1


async def test_tpm_budget(autojump_clock):
    lim = DeploymentLimiter(tpm=6000, clock=trio.current_time, id="d")
    async with lim.slot(tokens=4000):
        pass
    with pytest.raises(OmenError) as info:
        async with lim.slot(tokens=4000):
            pass
    e = info.value
    assert e.status == 429
    assert e.headers == {"Retry-After": "20"}  # 2,000 tokens missing at 100 tokens/s
    assert "6000 tokens per minute" in e.message and "~4000" in e.message
    await trio.sleep(20)
    async with lim.slot(tokens=4000):
        pass


async def test_a_request_larger_than_the_tpm_budget_waits_for_a_full_bucket(autojump_clock):
    lim = DeploymentLimiter(tpm=1000, clock=trio.current_time, id="d")
    async with lim.slot(tokens=5000):  # full bucket: admitted, and it empties it
        pass
    assert lim.snapshot()["tpm_left"] == 0
    with pytest.raises(OmenError):
        async with lim.slot(tokens=1):
            pass


async def test_budget_is_given_back_when_no_slot_came(autojump_clock):
    static = FakeClock()  # no refill: only takes and give-backs move the budget
    lim = DeploymentLimiter(max_concurrent=1, max_queue=2, queue_timeout_s=5, rpm=60, tpm=600, clock=static, id="d")
    scope = trio.CancelScope()

    async def cancelled_waiter() -> None:
        with scope:
            async with lim.slot(tokens=100):
                pass

    async with trio.open_nursery() as nursery:
        nursery.start_soon(hold, lim, 100)
        await trio.sleep(0.1)
        assert (lim.snapshot()["rpm_left"], lim.snapshot()["tpm_left"]) == (59, 600)
        with pytest.raises(OmenError):
            async with lim.slot(tokens=100):  # times out in the queue
                pass
        nursery.start_soon(cancelled_waiter)
        await trio.sleep(0.1)
        assert lim.snapshot()["rpm_left"] == 58  # taken while waiting
        scope.cancel()
        await trio.sleep(0.1)
        assert (lim.snapshot()["rpm_left"], lim.snapshot()["tpm_left"]) == (59, 600)
        nursery.cancel_scope.cancel()


async def test_slot_is_released_when_the_body_fails(autojump_clock):
    lim = DeploymentLimiter(max_concurrent=1, id="d")
    with pytest.raises(RuntimeError):
        async with lim.slot():
            raise RuntimeError("upstream broke")
    assert lim.in_use == 0
    with trio.move_on_after(1):
        async with lim.slot():
            await trio.sleep(10)  # cancelled inside the body
    assert lim.in_use == 0


async def test_free_capacity_and_saturation(autojump_clock):
    static = FakeClock()
    lim = DeploymentLimiter(max_concurrent=4, rpm=60, clock=static, id="d")
    assert lim.free_capacity() == 1.0
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(lim.slot())
        assert lim.free_capacity() == 0.75
        for _ in range(3):
            await stack.enter_async_context(lim.slot())
        assert lim.free_capacity() == 0.0
        assert not lim.saturated()  # full, but the queue (4 places) still takes requests
        snap = lim.snapshot()
        assert snap["in_flight"] == 4
        assert snap["max_queue"] == 4
        assert snap["rpm_left"] == 56
        assert snap["free_capacity"] == 0.0
    assert lim.free_capacity() == pytest.approx(56 / 60)


def test_invalid_limits_are_refused():
    with pytest.raises(ValueError, match="max_concurrent"):
        DeploymentLimiter(max_concurrent=0, id="d")
    with pytest.raises(ValueError, match="rpm"):
        DeploymentLimiter(rpm=-1, id="d")
    with pytest.raises(ValueError, match="max_queue"):
        DeploymentLimiter(max_concurrent=1, max_queue=-1, id="d")
