"""A sliding time window of outcomes (ok / failed), kept in a fixed number of time buckets.

Buckets rather than one entry per request: memory stays bounded at any request rate (a breaker at
1,000 req/s over 30 s would otherwise hold 30,000 entries), and adding is O(1). The price is
resolution: the window covers the last ``window_s`` seconds to within one bucket
(``window_s / buckets``). Time comes from the caller (an injected clock), so behaviour is exact and
repeatable in tests.
"""

from __future__ import annotations

import math
from collections import deque

DEFAULT_BUCKETS = 20


class OutcomeWindow:
    """Counts of requests and failures over the last ``window_s`` seconds."""

    __slots__ = ("_buckets", "_errors", "_n", "_total", "_width")

    def __init__(self, window_s: float, buckets: int = DEFAULT_BUCKETS) -> None:
        if window_s <= 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        if buckets < 1:
            raise ValueError(f"buckets must be >= 1, got {buckets}")
        self._n = buckets
        self._width = window_s / buckets
        # Each bucket: [index, requests, errors]; index = floor(t / width), oldest first.
        self._buckets: deque[list[int]] = deque()
        self._total = 0
        self._errors = 0

    def _index(self, now: float) -> int:
        return math.floor(now / self._width)

    def _prune(self, index: int) -> None:
        oldest = index - self._n + 1  # buckets before this one have left the window
        buckets = self._buckets
        while buckets and buckets[0][0] < oldest:
            _, total, errors = buckets.popleft()
            self._total -= total
            self._errors -= errors

    def add(self, ok: bool, now: float) -> None:
        index = self._index(now)
        self._prune(index)
        buckets = self._buckets
        if buckets and buckets[-1][0] >= index:
            # Same bucket (or a clock that stepped back a little): count it in the newest bucket.
            bucket = buckets[-1]
        else:
            bucket = [index, 0, 0]
            buckets.append(bucket)
        bucket[1] += 1
        self._total += 1
        if not ok:
            bucket[2] += 1
            self._errors += 1

    def counts(self, now: float) -> tuple[int, int]:
        """(requests, errors) in the window ending at ``now``."""
        self._prune(self._index(now))
        return self._total, self._errors

    def clear(self) -> None:
        self._buckets.clear()
        self._total = 0
        self._errors = 0
