"""Passive health of one deployment, measured from the traffic it serves (and from active probes).

- Latency: exponentially weighted moving averages (EWMA) of time to first token and of total
  latency, over successful requests only (a failure that returns at once would otherwise make a
  broken deployment look fast). ``ALPHA = 0.2`` is the weight of the newest sample: the last ten
  samples carry ~89 % of the average, so it follows a change within a few requests without jumping on
  one outlier. A slow EWMA (``BASELINE_ALPHA = 0.02``, ~100 samples) of the same figures is the
  deployment's normal, against which health.py detects "much slower than usual".
- Error rate: failures / requests over a sliding window (``window_s``, 60 s by default).
- In flight: requests started and not finished (least-busy strategy, status page).
- p95 of the time to first token over the last ``SAMPLES`` successful requests (hedging delay).

Before the first sample the EWMAs and the p95 are None ("unknown"), never 0: a new deployment must
not look infinitely fast.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from omen.resilience.window import OutcomeWindow

ALPHA = 0.2
BASELINE_ALPHA = 0.02
WINDOW_S = 60.0
SAMPLES = 200


def _ewma(old: float | None, sample: float, alpha: float) -> float:
    return sample if old is None else old + alpha * (sample - old)


class DeploymentStats:
    __slots__ = (
        "_clock",
        "_ttft_samples",
        "_window",
        "baseline_latency_ms",
        "baseline_ttft_ms",
        "ewma_latency_ms",
        "ewma_ttft_ms",
        "failures",
        "in_flight",
        "last_error_at",
        "last_ok_at",
        "latency_samples",
        "requests",
        "successes",
        "ttft_count",
    )

    def __init__(self, clock: Callable[[], float] = time.monotonic, window_s: float = WINDOW_S) -> None:
        self._clock = clock
        self._window = OutcomeWindow(window_s)
        self._ttft_samples: deque[float] = deque(maxlen=SAMPLES)
        self.in_flight = 0
        self.requests = 0  # finished requests, lifetime
        self.successes = 0
        self.failures = 0
        self.ewma_ttft_ms: float | None = None
        self.ewma_latency_ms: float | None = None
        self.baseline_ttft_ms: float | None = None
        self.baseline_latency_ms: float | None = None
        self.ttft_count = 0  # successful requests with a first-token time
        self.latency_samples = 0  # successful requests (total latency samples)
        self.last_ok_at: float | None = None  # clock() of the last success / failure
        self.last_error_at: float | None = None

    def start(self) -> None:
        self.in_flight += 1

    def finish(self, ok: bool, ttft_s: float | None, total_s: float) -> None:
        """A request started with :meth:`start` is over. ``ttft_s``: time to the first response byte
        or token (None if none arrived); ``total_s``: the whole request. Both in seconds."""
        if self.in_flight > 0:
            self.in_flight -= 1
        self.observe(ok, ttft_s, total_s)

    def observe(self, ok: bool, ttft_s: float | None, total_s: float) -> None:
        """Record an outcome that was not counted in flight (an active health probe)."""
        now = self._clock()
        self.requests += 1
        self._window.add(ok, now)
        if not ok:
            self.failures += 1
            self.last_error_at = now
            return
        self.successes += 1
        self.last_ok_at = now
        if math.isfinite(total_s) and total_s >= 0:
            ms = total_s * 1000.0
            self.ewma_latency_ms = _ewma(self.ewma_latency_ms, ms, ALPHA)
            self.baseline_latency_ms = _ewma(self.baseline_latency_ms, ms, BASELINE_ALPHA)
            self.latency_samples += 1
        if ttft_s is not None and math.isfinite(ttft_s) and ttft_s >= 0:
            ms = ttft_s * 1000.0
            self.ewma_ttft_ms = _ewma(self.ewma_ttft_ms, ms, ALPHA)
            self.baseline_ttft_ms = _ewma(self.baseline_ttft_ms, ms, BASELINE_ALPHA)
            self.ttft_count += 1
            self._ttft_samples.append(ms)

    # ---- derived figures --------------------------------------------------------------------------

    def window_counts(self) -> tuple[int, int]:
        """(requests, failures) in the sliding window."""
        return self._window.counts(self._clock())

    @property
    def error_rate(self) -> float:
        """Failure share over the sliding window; 0.0 when the window is empty."""
        total, errors = self.window_counts()
        return errors / total if total else 0.0

    @property
    def success_rate(self) -> float:
        """Success share over the sliding window; 1.0 when the window is empty (nothing went wrong)."""
        total, errors = self.window_counts()
        return (total - errors) / total if total else 1.0

    def p95_ttft_ms(self) -> float | None:
        """95th percentile (nearest rank) of the last ``SAMPLES`` first-token times; None before any."""
        if not self._ttft_samples:
            return None
        ordered = sorted(self._ttft_samples)
        rank = math.ceil(0.95 * len(ordered))  # nearest-rank: the smallest value >= 95 % of samples
        return ordered[rank - 1]

    def snapshot(self) -> dict[str, Any]:
        total, errors = self.window_counts()
        return {
            "in_flight": self.in_flight,
            "requests": self.requests,
            "successes": self.successes,
            "failures": self.failures,
            "window_requests": total,
            "window_errors": errors,
            "error_rate": errors / total if total else 0.0,
            "success_rate": (total - errors) / total if total else 1.0,
            "ewma_ttft_ms": self.ewma_ttft_ms,
            "ewma_latency_ms": self.ewma_latency_ms,
            "baseline_ttft_ms": self.baseline_ttft_ms,
            "baseline_latency_ms": self.baseline_latency_ms,
            "p95_ttft_ms": self.p95_ttft_ms(),
        }
