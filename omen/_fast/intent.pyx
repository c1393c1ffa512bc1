# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Compiled twin of ``omen._fast.intent_py`` (same API and results; see that module's docstring).

Why compiled: ``model="auto"`` classifies every request it routes, and the pure twin runs one
``str.find`` loop per feature (~1,000 of them). Here one pass over the lower-cased text's code points
tries, at each position, only the features whose first two characters hash to that position's pair (or,
for one-character features, whose character it is): bucket tables built once at import. Comparisons run
in C on the string's own storage (no copies, no per-character objects). The feature table and ``decide`` are imported from the pure
twin so that both count the same features and turn counts into the same answer.
"""

from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.string cimport memset

from omen._fast.intent_py import ALPHA, CAP, DIGIT, FEATURES, LEFT, LEFT_ASCII, RIGHT, decide


cdef extern from "Python.h":
    int PyUnicode_KIND(object o)
    void* PyUnicode_DATA(object o)
    Py_UCS4 PyUnicode_READ(int kind, void* data, Py_ssize_t index) nogil
    bint Py_UNICODE_ISALNUM(Py_UCS4 ch) nogil


cdef enum:
    NB1 = 1024  # buckets of one-character patterns: code point & (NB1 - 1)
    NB2 = 4096  # buckets of longer patterns: a hash of their first two characters
    F_LEFT = 1
    F_RIGHT = 2
    F_LEFT_ASCII = 4

assert (LEFT, RIGHT, LEFT_ASCII) == (F_LEFT, F_RIGHT, F_LEFT_ASCII)
assert (DIGIT, ALPHA) == ("\x00", "\x01")  # stored as code points 0 and 1 below

cdef int _n = 0  # number of features
cdef int _cap = CAP
cdef Py_UCS4* _chars = NULL  # every pattern's code points, concatenated (DIGIT is 0, ALPHA 1)
cdef int* _offset = NULL  # where feature j's pattern starts in _chars
cdef int* _length = NULL
cdef int* _flags = NULL
# CSR layout: the features of bucket b are _items1[_start1[b]:_start1[b + 1]] (and likewise for 2).
cdef int* _start1 = NULL
cdef int* _items1 = NULL
cdef int* _start2 = NULL
cdef int* _items2 = NULL


cdef void* _alloc(Py_ssize_t size) except NULL:
    cdef void* p = PyMem_Malloc(size if size > 0 else 1)
    if p == NULL:
        raise MemoryError()
    return p


cdef inline unsigned int _bucket2(Py_UCS4 a, Py_UCS4 b) nogil:
    # Two odd multipliers (Knuth, Murmur3) mixed and the top bits kept: distinct pairs rarely collide,
    # and a collision only costs a failed comparison.
    cdef unsigned int h = (<unsigned int>a * 2654435761U) ^ (<unsigned int>b * 2246822519U)
    return (h >> 20) & (NB2 - 1)


def _class(ch):
    """The code points one pattern character matches."""
    if ch == DIGIT:
        return range(0x30, 0x3A)
    if ch == ALPHA:
        return range(0x61, 0x7B)
    return (ord(ch),)


cdef int* _csr(list buckets, int** items) except NULL:
    cdef int nb = len(buckets), b, k = 0
    cdef int* start = <int*>_alloc((nb + 1) * sizeof(int))
    items[0] = <int*>_alloc(sum(len(bucket) for bucket in buckets) * sizeof(int))
    for b in range(nb):
        start[b] = k
        for j in buckets[b]:
            items[0][k] = j
            k += 1
    start[nb] = k
    return start


cdef int _build() except -1:
    """Lay the feature table out in C arrays once; they live as long as the module."""
    global _n, _chars, _offset, _length, _flags, _start1, _items1, _start2, _items2
    cdef int n = len(FEATURES), j, pos = 0
    cdef Py_UCS4 c0, c1
    cdef Py_ssize_t total = sum(len(f[0]) for f in FEATURES)
    cdef list buckets1 = [[] for _ in range(NB1)]
    cdef list buckets2 = [[] for _ in range(NB2)]
    cdef list bucket
    _chars = <Py_UCS4*>_alloc(total * sizeof(Py_UCS4))
    _offset = <int*>_alloc(n * sizeof(int))
    _length = <int*>_alloc(n * sizeof(int))
    _flags = <int*>_alloc(n * sizeof(int))
    for j, feature in enumerate(FEATURES):
        pattern, flags = feature[0], feature[4]
        _offset[j] = pos
        _length[j] = len(pattern)
        _flags[j] = flags
        for ch in pattern:
            _chars[pos] = ord(ch)
            pos += 1
        keys = []
        for first in _class(pattern[0]):
            c0 = first
            if len(pattern) == 1:
                keys.append(<unsigned int>c0 & (NB1 - 1))
            else:
                for second in _class(pattern[1]):
                    c1 = second
                    keys.append(_bucket2(c0, c1))
        target = buckets1 if len(pattern) == 1 else buckets2
        for key in keys:
            bucket = target[key]
            if not bucket or bucket[len(bucket) - 1] != j:  # two pairs of one pattern may share a bucket: list it once
                bucket.append(j)
    _start1 = _csr(buckets1, &_items1)
    _start2 = _csr(buckets2, &_items2)
    _n = n
    return 0


_build()


cdef inline bint _is_word(Py_UCS4 c) nogil:
    # The pure twin's _is_word: alphanumeric or '_', except scripts written without spaces.
    if not (Py_UNICODE_ISALNUM(c) or c == 0x5F):
        return False
    return not (
        (0x0E00 <= c <= 0x0E7F)
        or (0x2E80 <= c <= 0x9FFF)
        or (0xAC00 <= c <= 0xD7AF)
        or (0xF900 <= c <= 0xFAFF)
        or (0xFF00 <= c <= 0xFFEF)
        or (0x20000 <= c <= 0x3FFFF)
    )


cdef inline bint _is_ascii_word(Py_UCS4 c) nogil:
    # The pure twin's _ASCII_WORD: a-z, 0-9, '_' and '.' (the text is lower-cased).
    return (0x61 <= c <= 0x7A) or (0x30 <= c <= 0x39) or c == 0x5F or c == 0x2E


cdef inline bint _hit(int j, int kind, void* data, Py_ssize_t i, Py_ssize_t n) nogil:
    """Does feature j match at position i, boundaries included?"""
    cdef Py_ssize_t size = _length[j], m
    cdef const Py_UCS4* pattern = _chars + _offset[j]
    cdef Py_UCS4 p, t
    cdef int flags = _flags[j]
    if i + size > n:
        return False
    for m in range(size):
        p = pattern[m]
        t = PyUnicode_READ(kind, data, i + m)
        if p == 0:
            if t < 0x30 or t > 0x39:
                return False
        elif p == 1:
            if t < 0x61 or t > 0x7A:
                return False
        elif p != t:
            return False
    if flags:
        if flags & F_LEFT and i > 0 and _is_word(PyUnicode_READ(kind, data, i - 1)):
            return False
        if flags & F_RIGHT and i + size < n and _is_word(PyUnicode_READ(kind, data, i + size)):
            return False
        if flags & F_LEFT_ASCII and i > 0 and _is_ascii_word(PyUnicode_READ(kind, data, i - 1)):
            return False
    return True


cdef int _scan_into(str text, int* counts) except -1:
    """counts[j] = hits of feature j in text.lower(), capped (counts must hold _n zeros)."""
    cdef str low = text.lower()
    cdef Py_ssize_t n = len(low), i
    cdef int kind = PyUnicode_KIND(low)
    cdef void* data = PyUnicode_DATA(low)
    cdef int k, j, cap = _cap
    cdef unsigned int b
    cdef Py_UCS4 c
    with nogil:  # compile-time proof that the loop touches no Python object
        for i in range(n):
            c = PyUnicode_READ(kind, data, i)
            b = <unsigned int>c & (NB1 - 1)
            for k in range(_start1[b], _start1[b + 1]):
                j = _items1[k]
                if counts[j] < cap and _hit(j, kind, data, i, n):
                    counts[j] += 1
            if i + 1 < n:
                b = _bucket2(c, PyUnicode_READ(kind, data, i + 1))
                for k in range(_start2[b], _start2[b + 1]):
                    j = _items2[k]
                    if counts[j] < cap and _hit(j, kind, data, i, n):
                        counts[j] += 1
    return 0


def scan(text):
    """Hits per feature (index as in ``FEATURES``) in ``text.lower()``, each capped at ``CAP``."""
    if not isinstance(text, str):
        raise TypeError(f"text must be str, not {type(text).__name__}")
    cdef int* counts = <int*>_alloc(_n * sizeof(int))
    cdef int j
    try:
        memset(counts, 0, _n * sizeof(int))
        _scan_into(text, counts)
        return [counts[j] for j in range(_n)]
    finally:
        PyMem_Free(counts)


def classify_text(text):
    """("code" | "reasoning" | "chat", short reason) for one text."""
    if not isinstance(text, str):
        raise TypeError(f"text must be str, not {type(text).__name__}")
    cdef int* counts = <int*>_alloc(_n * sizeof(int))
    cdef int j
    try:
        memset(counts, 0, _n * sizeof(int))
        _scan_into(text, counts)
        return decide([(j, counts[j]) for j in range(_n) if counts[j]])
    finally:
        PyMem_Free(counts)


def classify_weighted(parts):
    """Like ``classify_text`` over several texts, each text's hits multiplied by its weight."""
    cdef int* counts = <int*>_alloc(_n * sizeof(int))
    cdef double* totals = <double*>_alloc(_n * sizeof(double))
    cdef int j
    cdef double w
    try:
        for j in range(_n):
            totals[j] = 0.0
        for text, weight in parts:
            if not text or not weight:
                continue
            if not isinstance(text, str):
                raise TypeError(f"text must be str, not {type(text).__name__}")
            w = weight
            memset(counts, 0, _n * sizeof(int))
            _scan_into(text, counts)
            for j in range(_n):
                if counts[j]:
                    totals[j] += w * counts[j]
        return decide([(j, totals[j]) for j in range(_n) if totals[j]])
    finally:
        PyMem_Free(counts)
        PyMem_Free(totals)
