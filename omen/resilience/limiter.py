"""Backpressure for one deployment: a concurrency limit with a bounded FIFO wait queue, and request /
token budgets per minute.

``async with limiter.slot(tokens):`` admits a request or raises an :class:`OmenError` the client can
act on, always with ``Retry-After``:

- the queue is full (``max_queue`` requests already waiting) -> 429 ``deployment_queue_full``;
- the ``rpm`` or ``tpm`` budget is spent -> 429 ``rate_limit_exceeded``, Retry-After = the time until
  the budget has refilled enough for this request;
- no slot freed within ``queue_timeout_s`` -> 503 ``deployment_queue_timeout``.

Without limits nothing waits: ``slot()`` only counts the request in flight.

Fairness and cancellation: waiters park in a ``trio.lowlevel.ParkingLot``, which wakes them in
arrival order. A finished request hands its slot straight to the first waiter (the count of slots in
use does not drop and rise again), so a newcomer can never overtake the queue; a newcomer queues
whenever anyone is already waiting. A waiter that is cancelled or times out leaves the lot at once
(trio removes it when the wait is aborted), so a released slot always goes to a live waiter.

Budgets are token buckets per minute, per process: ``rpm`` holds up to ``rpm`` requests and refills
at ``rpm / 60`` per second (``tpm`` likewise, in tokens), so a burst of a full minute's budget is
allowed and then the steady rate. They are taken when the request is admitted to the queue, and given
back if it then never gets a slot. A request estimated larger than the whole ``tpm`` budget is charged
the whole budget (it waits for a full bucket) instead of being refused forever.

``clock`` (monotonic seconds) refills the buckets; inject ``trio.current_time`` to run them on trio's
(mock) clock in tests. Queue timeouts always use trio's clock.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import trio

from omen.errors import OmenError

# Retry-After bounds for a full queue / a queue timeout (estimated from the mean time a slot is held).
_MIN_RETRY_S = 1
_MAX_QUEUE_RETRY_S = 60
_HOLD_ALPHA = 0.2  # EWMA weight of the newest slot hold time


def _retry_header(seconds: float) -> dict[str, str]:
    # delay-seconds must be a non-negative integer (RFC 9110 10.2.3): round up, never below 1 s.
    return {"Retry-After": str(max(_MIN_RETRY_S, math.ceil(seconds)))}


class _Bucket:
    """A token bucket refilled continuously to ``per_minute`` per minute."""

    __slots__ = ("_clock", "_stamp", "capacity", "level", "rate")

    def __init__(self, per_minute: int, clock: Callable[[], float]) -> None:
        self.capacity = float(per_minute)
        self.rate = self.capacity / 60.0
        self.level = self.capacity
        self._clock = clock
        self._stamp = clock()

    def refill(self) -> float:
        now = self._clock()
        if now > self._stamp:
            self.level = min(self.capacity, self.level + (now - self._stamp) * self.rate)
        self._stamp = now
        return self.level

    def cost(self, amount: float) -> float:
        return min(float(amount), self.capacity)

    def wait_s(self, amount: float) -> float:
        """Seconds until ``amount`` can be taken (0: now). Call after :meth:`refill`."""
        missing = self.cost(amount) - self.level
        return missing / self.rate if missing > 0 else 0.0

    def take(self, amount: float) -> None:
        self.level -= self.cost(amount)

    def give(self, amount: float) -> None:
        self.level = min(self.capacity, self.level + self.cost(amount))


class DeploymentLimiter:
    def __init__(
        self,
        max_concurrent: int | None = None,
        max_queue: int | None = None,
        queue_timeout_s: float | None = 10.0,
        rpm: int | None = None,
        tpm: int | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        id: str = "deployment",
    ) -> None:
        for name, value in (("max_concurrent", max_concurrent), ("rpm", rpm), ("tpm", tpm)):
            if value is not None and value < 1:
                raise ValueError(f"{id}: {name} must be >= 1 when set, got {value}")
        if max_queue is not None and max_queue < 0:
            raise ValueError(f"{id}: max_queue must be >= 0, got {max_queue}")
        self.id = id
        self.max_concurrent = max_concurrent
        # Default queue: as many waiting as running (DeploymentConfig.max_queue).
        self.max_queue = max_queue if max_queue is not None else (max_concurrent or 0)
        self.queue_timeout_s = math.inf if queue_timeout_s is None else max(0.0, queue_timeout_s)
        self.rpm = rpm
        self.tpm = tpm
        self._clock = clock
        self._rpm = _Bucket(rpm, clock) if rpm else None
        self._tpm = _Bucket(tpm, clock) if tpm else None
        self._lot = trio.lowlevel.ParkingLot()
        self._in_use = 0
        self._hold_s: float | None = None  # EWMA of how long a slot is held
        self.admitted = 0
        self.rejected_queue_full = 0
        self.rejected_rate = 0
        self.timed_out = 0

    # ---- admission --------------------------------------------------------------------------------

    def slot(self, tokens: int = 0) -> _Slot:
        """``async with limiter.slot(tokens):`` — ``tokens``: the request's estimated prompt + output
        tokens, charged to the ``tpm`` budget."""
        return _Slot(self, tokens)

    @property
    def in_use(self) -> int:
        return self._in_use

    @property
    def queued(self) -> int:
        return len(self._lot)

    def _must_wait(self) -> bool:
        # FIFO: with anyone already waiting, a newcomer queues even if it could squeeze in.
        return self.max_concurrent is not None and (self._in_use >= self.max_concurrent or len(self._lot) > 0)

    async def _acquire(self, tokens: int) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        wait = self._must_wait()
        if wait and len(self._lot) >= self.max_queue:
            self.rejected_queue_full += 1
            raise self._queue_full()
        self._take_budget(tokens)
        if not wait:
            self._in_use += 1
            self.admitted += 1
            return
        try:
            with trio.move_on_after(self.queue_timeout_s):
                await self._lot.park()
                # Woken by _release: the slot was handed over with _in_use unchanged; it is ours.
                self.admitted += 1
                return
        except BaseException:  # cancelled while waiting: trio already took us out of the lot
            self._give_budget(tokens)
            raise
        self._give_budget(tokens)
        self.timed_out += 1
        raise self._queue_timeout()

    def _release(self, held_s: float) -> None:
        if held_s >= 0:
            self._hold_s = held_s if self._hold_s is None else self._hold_s + _HOLD_ALPHA * (held_s - self._hold_s)
        if self._lot:
            self._lot.unpark(count=1)  # hand the slot over: _in_use stays the same
        else:
            self._in_use -= 1

    def _take_budget(self, tokens: int) -> None:
        waits: list[tuple[float, str]] = []
        if self._rpm is not None:
            self._rpm.refill()
            if (w := self._rpm.wait_s(1)) > 0:
                waits.append((w, f"its limit of {self.rpm} requests per minute"))
        if self._tpm is not None and tokens > 0:
            self._tpm.refill()
            if (w := self._tpm.wait_s(tokens)) > 0:
                waits.append((w, f"its limit of {self.tpm} tokens per minute (this request needs ~{tokens})"))
        if waits:
            self.rejected_rate += 1
            wait_s, what = max(waits)
            headers = _retry_header(wait_s)
            raise OmenError(
                429,
                f"Deployment '{self.id}' reached {what}. Retry after {headers['Retry-After']}s.",
                type="rate_limit_error",
                code="rate_limit_exceeded",
                headers=headers,
            )
        if self._rpm is not None:
            self._rpm.take(1)
        if self._tpm is not None and tokens > 0:
            self._tpm.take(tokens)

    def _give_budget(self, tokens: int) -> None:
        if self._rpm is not None:
            self._rpm.give(1)
        if self._tpm is not None and tokens > 0:
            self._tpm.give(tokens)

    def _estimated_wait_s(self) -> float:
        """Rough time until a newcomer would get a slot: the queue ahead, served max_concurrent at a time."""
        if self._hold_s is None or not self.max_concurrent:
            return _MIN_RETRY_S
        estimate = self._hold_s * (len(self._lot) + 1) / self.max_concurrent
        return min(float(_MAX_QUEUE_RETRY_S), estimate)

    def _queue_full(self) -> OmenError:
        headers = _retry_header(self._estimated_wait_s())
        return OmenError(
            429,
            f"Deployment '{self.id}' is at capacity: {self._in_use} requests in flight (max_concurrent="
            f"{self.max_concurrent}) and {len(self._lot)} waiting (max_queue={self.max_queue}). "
            f"Retry after {headers['Retry-After']}s.",
            type="rate_limit_error",
            code="deployment_queue_full",
            headers=headers,
        )

    def _queue_timeout(self) -> OmenError:
        headers = _retry_header(self._estimated_wait_s())
        return OmenError(
            503,
            f"Deployment '{self.id}' had no free slot within the queue timeout of {self.queue_timeout_s:g}s "
            f"(max_concurrent={self.max_concurrent}). Retry after {headers['Retry-After']}s.",
            type="server_error",
            code="deployment_queue_timeout",
            headers=headers,
        )

    # ---- reporting --------------------------------------------------------------------------------

    def free_capacity(self) -> float:
        """Share of headroom left now, 0..1: the smallest of free slots (0 while anyone waits), the
        rpm budget and the tpm budget. 1.0 without limits."""
        free = 1.0
        if self.max_concurrent is not None:
            slots = 0.0 if self._lot else max(0, self.max_concurrent - self._in_use) / self.max_concurrent
            free = min(free, slots)
        for bucket in (self._rpm, self._tpm):
            if bucket is not None:
                free = min(free, max(0.0, bucket.refill() / bucket.capacity))
        return free

    def saturated(self) -> bool:
        """True when a new request would be refused right now: every slot taken and the queue full,
        or the rpm budget (or the whole tpm budget) spent. A deployment with free queue places is not
        saturated: its requests wait instead."""
        if self.max_concurrent is not None and self._in_use >= self.max_concurrent and len(self._lot) >= self.max_queue:
            return True
        if self._rpm is not None and self._rpm.refill() < 1.0:
            return True
        return self._tpm is not None and self._tpm.refill() < 1.0

    def snapshot(self) -> dict[str, Any]:
        return {
            "in_flight": self._in_use,
            "queued": len(self._lot),
            "max_concurrent": self.max_concurrent,
            "max_queue": self.max_queue if self.max_concurrent is not None else None,
            "queue_timeout_s": None if math.isinf(self.queue_timeout_s) else self.queue_timeout_s,
            "rpm": self.rpm,
            "rpm_left": None if self._rpm is None else math.floor(self._rpm.refill()),
            "tpm": self.tpm,
            "tpm_left": None if self._tpm is None else math.floor(self._tpm.refill()),
            "free_capacity": self.free_capacity(),
            "saturated": self.saturated(),
            "admitted": self.admitted,
            "rejected_queue_full": self.rejected_queue_full,
            "rejected_rate": self.rejected_rate,
            "timed_out": self.timed_out,
        }


class _Slot:
    """The async context manager of :meth:`DeploymentLimiter.slot` (a class, not a generator-based
    manager: it sits on every request's path)."""

    __slots__ = ("_limiter", "_started", "_tokens")

    def __init__(self, limiter: DeploymentLimiter, tokens: int) -> None:
        self._limiter = limiter
        self._tokens = tokens
        self._started = 0.0

    async def __aenter__(self) -> None:
        await self._limiter._acquire(self._tokens)
        self._started = self._limiter._clock()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._limiter._release(self._limiter._clock() - self._started)
