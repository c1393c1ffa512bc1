"""Circuit breaker per deployment: stop sending requests into a deployment that is failing.

States and transitions (``BreakerConfig``):

- ``closed``: every request is allowed; outcomes go into a sliding window of ``window_s`` seconds.
  When the window holds at least ``min_requests`` outcomes and the failure share is at or above
  ``error_rate``, the breaker opens.
- ``open``: nothing is allowed until ``cooldown_s`` has passed since it opened; then it is half-open.
  Outcomes recorded while open (requests admitted before it opened) are ignored.
- ``half_open``: up to ``half_open_probes`` requests are admitted as probes, concurrently. When that
  many probes have succeeded the breaker closes with an empty window (old failures do not count
  against the recovered deployment); the first failed probe opens it again and the cooldown restarts.
  Any outcome recorded while half-open counts as a probe result.

A probe that was admitted but never reached the deployment (the limiter refused it, the client went
away first) must be handed back with :meth:`release_probe`, or the half-open breaker would wait for a
verdict that never comes.

Time comes from ``clock`` (monotonic seconds), so tests drive it exactly; ``changed_at`` is wall-clock
Unix time for status pages. The open -> half-open transition happens on the first look after the
cooldown (``allow``, ``state``, ``snapshot``), timed as of the moment the cooldown ended.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from omen.config.schema import BreakerConfig
from omen.resilience.window import OutcomeWindow

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"


class CircuitBreaker:
    __slots__ = (
        "_clock",
        "_opened_at",
        "_probe_successes",
        "_probes_in_flight",
        "_state",
        "_wall",
        "_window",
        "changed_at",
        "config",
        "last_open_error_rate",
        "opens",
    )

    def __init__(
        self,
        config: BreakerConfig,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._clock = clock
        self._wall = wall
        self._window = OutcomeWindow(config.window_s)
        self._state = CLOSED
        self._opened_at = 0.0  # clock() when it last opened
        self._probes_in_flight = 0
        self._probe_successes = 0
        self.changed_at = wall()  # Unix time of the last transition (creation until the first)
        self.opens = 0  # how many times it opened, for status and tests
        self.last_open_error_rate: float | None = None  # the window's failure share when it last opened

    # ---- state -----------------------------------------------------------------------------------

    @property
    def state(self) -> str:
        self._advance(self._clock())
        return self._state

    def _advance(self, now: float) -> None:
        if self._state == OPEN and now - self._opened_at >= self.config.cooldown_s:
            ended = self._opened_at + self.config.cooldown_s
            self._to(HALF_OPEN, now, ended)

    def _to(self, state: str, now: float, at: float | None = None) -> None:
        """Transition; ``at`` is the clock time it logically happened (default: now)."""
        self._state = state
        self._probes_in_flight = 0
        self._probe_successes = 0
        when = now if at is None else at
        self.changed_at = self._wall() - (now - when)
        if state == OPEN:
            self._opened_at = when
            self.opens += 1
        elif state == CLOSED:
            self._window.clear()

    @property
    def _probes(self) -> int:
        return max(1, self.config.half_open_probes)

    # ---- the three calls a request makes ----------------------------------------------------------

    def allow(self) -> bool:
        """May a request go to this deployment now? In half-open, True admits the caller as a probe."""
        self._advance(self._clock())
        if self._state == CLOSED:
            return True
        if self._state == OPEN:
            return False
        if self._probes_in_flight + self._probe_successes < self._probes:
            self._probes_in_flight += 1
            return True
        return False

    def record(self, ok: bool) -> None:
        """The outcome of a request this breaker allowed (ok: the deployment served it)."""
        now = self._clock()
        self._advance(now)
        if self._state == CLOSED:
            self._window.add(ok, now)
            if not ok:  # only a failure can raise the failure share to the threshold
                total, errors = self._window.counts(now)
                if total >= max(1, self.config.min_requests) and errors / total >= self.config.error_rate:
                    self.last_open_error_rate = errors / total
                    self._to(OPEN, now)
        elif self._state == HALF_OPEN:
            if self._probes_in_flight > 0:
                self._probes_in_flight -= 1
            if not ok:
                self._to(OPEN, now)  # the cooldown starts again
            else:
                self._probe_successes += 1
                if self._probe_successes >= self._probes:
                    self._to(CLOSED, now)
        # OPEN: a late outcome of a request admitted before it opened; the cooldown decides.

    def release_probe(self) -> None:
        """Hand back a half-open probe slot that produced no outcome (the request never reached the
        deployment). Harmless in any other state."""
        if self._state == HALF_OPEN and self._probes_in_flight > 0:
            self._probes_in_flight -= 1

    # ---- reporting --------------------------------------------------------------------------------

    def retry_in_s(self) -> float:
        """Seconds until an open breaker turns half-open (0 when not open)."""
        now = self._clock()
        self._advance(now)
        if self._state != OPEN:
            return 0.0
        return max(0.0, self._opened_at + self.config.cooldown_s - now)

    def snapshot(self) -> dict[str, Any]:
        now = self._clock()
        self._advance(now)
        total, errors = self._window.counts(now)
        return {
            "state": self._state,
            "changed_at": self.changed_at,
            "window_requests": total,
            "window_errors": errors,
            "error_rate": errors / total if total else 0.0,
            "opens": self.opens,
            "last_open_error_rate": self.last_open_error_rate,
            "retry_in_s": max(0.0, self._opened_at + self.config.cooldown_s - now) if self._state == OPEN else 0.0,
            "probes_in_flight": self._probes_in_flight,
            "probe_successes": self._probe_successes,
        }
