"""The ``score`` routing strategy: one number per candidate deployment, higher = better.

Pure-Python twin of ``omen._fast.scoring`` (compiled); both give bit-identical results (same
operations on IEEE doubles in the same order; tests/fast/test_scoring.py checks it on random inputs).

Inputs of one candidate (a row), each normalised to a term in [0, 1] where 1 is best:

====================  =========================================  ===================================
input                 meaning                                    term
====================  =========================================  ===================================
``health``            0..1 (omen.resilience.health.HEALTH_SCORE:  ``clamp(health)``
                      operational 1, degraded 0.5, down 0)
``latency_ms``        observed latency (EWMA of time to first    ``1 / (1 + latency_ms / 1000)``
                      token), milliseconds                       (0 ms -> 1, 1 s -> 0.5, 3 s -> 0.25)
``error_rate``        failure share 0..1 (sliding window)        ``1 - clamp(error_rate)``
``cost``              in ``score``: relative cost 0..1 (this     ``1 - clamp(cost)``
                      candidate's ÷ the dearest candidate's);
                      in ``best``/``scores``: raw cost (any
                      unit, e.g. estimated USD), made relative
                      to the dearest row there
``free_capacity``     0..1 (DeploymentLimiter.free_capacity)     ``clamp(free_capacity)``
``capability_fit``    0..1 (how well the model's capabilities     ``clamp(capability_fit)``
                      fit the request)
====================  =========================================  ===================================

``score = sum(w_i * term_i) / sum(w_i)`` with the weights of ``ScoreWeights`` in its order (health,
latency, error_rate, cost, capacity, capability): a weighted mean, so a score is always in [0, 1] and
comparable across requests. Sums run left to right in that order.

Odd inputs never win by accident: NaN counts as the worst value of its input (health/capacity/fit 0,
error rate and relative cost 1, latency infinite -> term 0); a NaN raw cost counts as infinitely dear;
negative latency and cost count as 0; infinite latency gives term 0. A weight that is negative, NaN or
infinite counts as 0 and a weight above ``MAX_WEIGHT`` as ``MAX_WEIGHT`` (so sums stay finite); when
all weights are 0 every score is 0.

``best(rows, weights)`` returns the index of the highest score; ties go to the lowest index (callers
order rows by preference, e.g. priority tier then config order). It raises ValueError on no rows.
"""

from __future__ import annotations

from collections.abc import Sequence

INF = float("inf")
MAX_WEIGHT = 1e9
NWEIGHTS = 6

Row = Sequence[float]


def _good(x: float) -> float:
    """A higher-is-better input clamped to [0, 1]; NaN -> 0 (worst)."""
    if not (x > 0.0):
        return 0.0
    if x > 1.0:
        return 1.0
    return x


def _bad(x: float) -> float:
    """A higher-is-worse input clamped to [0, 1]; NaN -> 1 (worst)."""
    if x != x:
        return 1.0
    if not (x > 0.0):
        return 0.0
    if x > 1.0:
        return 1.0
    return x


def _latency(ms: float) -> float:
    if ms != ms:
        return 0.0
    if not (ms > 0.0):
        return 1.0
    return 1.0 / (1.0 + ms / 1000.0)


def _raw_cost(c: float) -> float:
    if c != c:
        return INF
    if not (c > 0.0):
        return 0.0
    return c


def _weights(weights: Sequence[float]) -> tuple[list[float], float]:
    if len(weights) != NWEIGHTS:
        raise ValueError(f"weights must have {NWEIGHTS} entries (ScoreWeights order), got {len(weights)}")
    out = []
    total = 0.0
    for raw in weights:
        w = float(raw)
        if not (w > 0.0) or w == INF:
            w = 0.0
        elif w > MAX_WEIGHT:
            w = MAX_WEIGHT
        out.append(w)
        total = total + w
    return out, total


def _score(
    h: float, lat: float, err: float, rel_cost: float, free: float, fit: float, w: list[float], wsum: float
) -> float:
    if not (wsum > 0.0):
        return 0.0
    total = w[0] * _good(h)
    total = total + w[1] * _latency(lat)
    total = total + w[2] * (1.0 - _bad(err))
    total = total + w[3] * (1.0 - _bad(rel_cost))
    total = total + w[4] * _good(free)
    total = total + w[5] * _good(fit)
    return total / wsum


def score(
    health: float,
    latency_ms: float,
    error_rate: float,
    cost: float,
    free_capacity: float,
    capability_fit: float,
    weights: Sequence[float],
) -> float:
    """The score of one candidate; ``cost`` is relative (0..1, see the module docstring)."""
    w, wsum = _weights(weights)
    return _score(
        float(health),
        float(latency_ms),
        float(error_rate),
        float(cost),
        float(free_capacity),
        float(capability_fit),
        w,
        wsum,
    )


def _read(rows: Sequence[Row]) -> tuple[list[tuple[float, float, float, float, float, float]], float]:
    """Rows as floats (raw cost sanitised) and the dearest cost."""
    if not isinstance(rows, (list, tuple)):
        rows = list(rows)
    out = []
    dearest = 0.0
    for row in rows:
        h, lat, err, c, free, fit = row
        cost = _raw_cost(float(c))
        if cost > dearest:
            dearest = cost
        out.append((float(h), float(lat), float(err), cost, float(free), float(fit)))
    return out, dearest


def scores(rows: Sequence[Row], weights: Sequence[float]) -> list[float]:
    """The score of every row, exactly as :func:`best` computes them (for explanations)."""
    w, wsum = _weights(weights)
    table, dearest = _read(rows)
    out = []
    for h, lat, err, cost, free, fit in table:
        rel = cost / dearest if dearest > 0.0 else 0.0
        out.append(_score(h, lat, err, rel, free, fit, w, wsum))
    return out


def best(rows: Sequence[Row], weights: Sequence[float]) -> int:
    """Index of the best row (rows of ``(health, latency_ms, error_rate, cost, free_capacity,
    capability_fit)`` with raw costs); ties -> the lowest index."""
    w, wsum = _weights(weights)
    table, dearest = _read(rows)
    if not table:
        raise ValueError("best() needs at least one row")
    best_i = 0
    best_s = 0.0
    for i, (h, lat, err, cost, free, fit) in enumerate(table):
        rel = cost / dearest if dearest > 0.0 else 0.0
        s = _score(h, lat, err, rel, free, fit, w, wsum)
        if i == 0 or s > best_s:
            best_i = i
            best_s = s
    return best_i
