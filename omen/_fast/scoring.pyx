# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
# distutils: extra_compile_args = -ffp-contract=off
"""Compiled twin of ``omen._fast.scoring_py`` (same formula, bit-identical results; see that module's
docstring for the formula and the handling of odd inputs).

Why compiled: ``best`` runs on every routed request over every candidate. Rows are read into a C
array of doubles once; the scoring loop then touches no Python object. ``-ffp-contract=off`` keeps
the C compiler from fusing ``a * b + c`` into one FMA instruction, which rounds once instead of twice
and would break bit-identity with the pure twin on FMA-capable targets. ``cdivision`` is safe: every
division has a non-zero divisor (checked) or is ``x / inf``.
"""

from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.math cimport INFINITY

MAX_WEIGHT = 1e9
NWEIGHTS = 6
cdef double _MAX_WEIGHT = MAX_WEIGHT
cdef enum:
    _NW = 6
    _STACK_ROWS = 32  # rows scored without a heap allocation


cdef inline double _good(double x) noexcept nogil:
    if not (x > 0.0):
        return 0.0
    if x > 1.0:
        return 1.0
    return x


cdef inline double _bad(double x) noexcept nogil:
    if x != x:
        return 1.0
    if not (x > 0.0):
        return 0.0
    if x > 1.0:
        return 1.0
    return x


cdef inline double _latency(double ms) noexcept nogil:
    if ms != ms:
        return 0.0
    if not (ms > 0.0):
        return 1.0
    return 1.0 / (1.0 + ms / 1000.0)


cdef inline double _raw_cost(double c) noexcept nogil:
    if c != c:
        return INFINITY
    if not (c > 0.0):
        return 0.0
    return c


cdef double _weights(object weights, double* w) except? -1.0:
    """Fills w[0..5] with the sanitised weights and returns their sum (left to right)."""
    cdef Py_ssize_t i, n = len(weights)
    cdef double x, total = 0.0
    if n != _NW:
        raise ValueError(f"weights must have {NWEIGHTS} entries (ScoreWeights order), got {n}")
    i = 0
    for raw in weights:
        if i >= _NW:
            raise ValueError(f"weights must have {NWEIGHTS} entries (ScoreWeights order)")
        x = raw
        if not (x > 0.0) or x == INFINITY:
            x = 0.0
        elif x > _MAX_WEIGHT:
            x = _MAX_WEIGHT
        w[i] = x
        total = total + x
        i += 1
    return total


cdef inline double _score(
    double h, double lat, double err, double rel_cost, double free, double fit, const double* w, double wsum
) noexcept nogil:
    cdef double total
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
    double health,
    double latency_ms,
    double error_rate,
    double cost,
    double free_capacity,
    double capability_fit,
    weights,
):
    """The score of one candidate; ``cost`` is relative (0..1, see the module docstring)."""
    cdef double w[_NW]
    cdef double wsum = _weights(weights, w)
    return _score(health, latency_ms, error_rate, cost, free_capacity, capability_fit, w, wsum)


cdef double _read(object rows, Py_ssize_t n, double* buf) except? -1.0:
    """Rows -> buf (6 doubles each, raw cost sanitised); returns the dearest cost."""
    cdef Py_ssize_t i = 0
    cdef double* r
    cdef double dearest = 0.0
    for row in rows:
        if i >= n:  # only if a __float__ grew the list under us; never write past buf
            raise RuntimeError("rows changed size while being read")
        h, lat, err, c, free, fit = row
        r = buf + i * _NW
        r[0] = h
        r[1] = lat
        r[2] = err
        r[3] = _raw_cost(c)
        r[4] = free
        r[5] = fit
        if r[3] > dearest:
            dearest = r[3]
        i += 1
    if i != n:
        raise RuntimeError("rows changed size while being read")
    return dearest


cdef void _scores(const double* buf, Py_ssize_t n, double dearest, const double* w, double wsum, double* out) noexcept nogil:
    cdef Py_ssize_t i
    cdef const double* r
    cdef double rel
    for i in range(n):
        r = buf + i * _NW
        rel = r[3] / dearest if dearest > 0.0 else 0.0
        out[i] = _score(r[0], r[1], r[2], rel, r[4], r[5], w, wsum)


cdef Py_ssize_t _best(const double* buf, Py_ssize_t n, double dearest, const double* w, double wsum) noexcept nogil:
    cdef Py_ssize_t i, best_i = 0
    cdef double s, rel, best_s = 0.0
    cdef const double* r
    for i in range(n):
        r = buf + i * _NW
        rel = r[3] / dearest if dearest > 0.0 else 0.0
        s = _score(r[0], r[1], r[2], rel, r[4], r[5], w, wsum)
        if i == 0 or s > best_s:
            best_i = i
            best_s = s
    return best_i


def scores(rows, weights):
    """The score of every row, exactly as :func:`best` computes them (for explanations)."""
    cdef double w[_NW]
    cdef double wsum = _weights(weights, w)
    if not isinstance(rows, (list, tuple)):
        rows = list(rows)
    cdef Py_ssize_t i, n = len(rows)
    cdef double dearest
    cdef double* buf = <double*>PyMem_Malloc((n * (_NW + 1) + 1) * sizeof(double))
    cdef list out = []
    if buf == NULL:
        raise MemoryError()
    try:
        dearest = _read(rows, n, buf)
        _scores(buf, n, dearest, w, wsum, buf + n * _NW)
        for i in range(n):
            out.append(buf[n * _NW + i])
        return out
    finally:
        PyMem_Free(buf)


def best(rows, weights):
    """Index of the best row (rows of ``(health, latency_ms, error_rate, cost, free_capacity,
    capability_fit)`` with raw costs); ties -> the lowest index."""
    cdef double w[_NW]
    cdef double wsum = _weights(weights, w)
    cdef double stack[_STACK_ROWS * _NW]
    cdef double* buf = stack
    cdef double dearest
    if not isinstance(rows, (list, tuple)):
        rows = list(rows)
    cdef Py_ssize_t n = len(rows)
    if n == 0:
        raise ValueError("best() needs at least one row")
    if n > _STACK_ROWS:
        buf = <double*>PyMem_Malloc(n * _NW * sizeof(double))
        if buf == NULL:
            raise MemoryError()
    try:
        dearest = _read(rows, n, buf)
        return _best(buf, n, dearest, w, wsum)
    finally:
        if buf != stack:
            PyMem_Free(buf)
