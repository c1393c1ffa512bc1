# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Compiled twin of ``omen._fast.bpe_py`` (same rule, same results; see that module's docstring).

Why compiled: the merge loop is pure integer work on part boundaries; only the rank look-ups touch
Python objects (one bytes key per candidate pair).
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItemWithError
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.ref cimport PyObject
from libc.stdint cimport int64_t
from libc.string cimport memmove

cdef int64_t _NONE = 1 << 62  # "no merge": larger than any rank
HEAP_MIN = 128  # piece length from which the heap strategy is used
cdef Py_ssize_t _HEAP_MIN = HEAP_MIN


cdef inline int64_t _rank(dict ranks, const char* p, Py_ssize_t n) except? -1:
    cdef PyObject* v = PyDict_GetItemWithError(ranks, PyBytes_FromStringAndSize(p, n))
    if v == NULL:
        return _NONE
    return <int64_t>(<object>v)


cdef Py_ssize_t _bounds_linear(const char* p, Py_ssize_t n, dict ranks, Py_ssize_t* st) except -1:
    """tiktoken's scan: fills st[0..m] with part boundaries and returns m, the number of parts."""
    cdef int64_t* pair = <int64_t*>PyMem_Malloc((n + 1) * sizeof(int64_t))
    cdef Py_ssize_t m = n, i, bi
    cdef int64_t best
    if pair == NULL:
        raise MemoryError()
    try:
        for i in range(n + 1):
            st[i] = i
        for i in range(n - 1):
            pair[i] = _rank(ranks, p + i, 2)  # pair[i]: rank of part i + part i+1
        while m > 1:
            best = _NONE
            bi = -1
            for i in range(m - 1):
                if pair[i] < best:  # strict: leftmost minimum wins, like tiktoken
                    best = pair[i]
                    bi = i
            if bi < 0:
                break
            memmove(st + bi + 1, st + bi + 2, (m - bi - 1) * sizeof(Py_ssize_t))
            memmove(pair + bi, pair + bi + 1, (m - bi - 2) * sizeof(int64_t))
            m -= 1
            if bi > 0:
                pair[bi - 1] = _rank(ranks, p + st[bi - 1], st[bi + 1] - st[bi - 1])
            if bi < m - 1:
                pair[bi] = _rank(ranks, p + st[bi], st[bi + 2] - st[bi])
        return m
    finally:
        PyMem_Free(pair)


cdef struct _Entry:
    int64_t rank
    Py_ssize_t start


cdef inline bint _less(_Entry a, _Entry b) noexcept nogil:
    return a.rank < b.rank or (a.rank == b.rank and a.start < b.start)


cdef inline void _push(_Entry* h, Py_ssize_t* size, int64_t rank, Py_ssize_t start) noexcept nogil:
    cdef Py_ssize_t i = size[0], parent
    cdef _Entry e
    e.rank = rank
    e.start = start
    size[0] += 1
    while i > 0:
        parent = (i - 1) >> 1
        if not _less(e, h[parent]):
            break
        h[i] = h[parent]
        i = parent
    h[i] = e


cdef inline _Entry _pop(_Entry* h, Py_ssize_t* size) noexcept nogil:
    cdef _Entry top = h[0], last
    cdef Py_ssize_t i = 0, c, n
    size[0] -= 1
    n = size[0]
    last = h[n]
    while True:
        c = 2 * i + 1
        if c >= n:
            break
        if c + 1 < n and _less(h[c + 1], h[c]):
            c += 1
        if not _less(h[c], last):
            break
        h[i] = h[c]
        i = c
    h[i] = last
    return top


cdef Py_ssize_t _bounds_heap(const char* p, Py_ssize_t n, dict ranks, Py_ssize_t* st) except -1:
    """Same merges as _bounds_linear in O(n log n): linked parts + a heap of (rank, start)."""
    cdef Py_ssize_t* nxt = <Py_ssize_t*>PyMem_Malloc((n + 1) * sizeof(Py_ssize_t))
    cdef Py_ssize_t* prv = <Py_ssize_t*>PyMem_Malloc((n + 1) * sizeof(Py_ssize_t))
    cdef int64_t* rank = <int64_t*>PyMem_Malloc((n + 1) * sizeof(int64_t))
    cdef _Entry* heap = <_Entry*>PyMem_Malloc((3 * n + 1) * sizeof(_Entry))  # n-1 + 2 per merge
    cdef char* alive = <char*>PyMem_Malloc(n + 1)
    cdef Py_ssize_t size = 0, i, s, t, u, q, m
    cdef int64_t r
    cdef _Entry e
    try:
        if nxt == NULL or prv == NULL or rank == NULL or heap == NULL or alive == NULL:
            raise MemoryError()
        for i in range(n + 1):
            nxt[i] = i + 1
            prv[i] = i - 1
            alive[i] = 1
            rank[i] = _NONE
        for i in range(n - 1):
            rank[i] = _rank(ranks, p + i, 2)
            if rank[i] != _NONE:
                _push(heap, &size, rank[i], i)
        while size:
            e = _pop(heap, &size)
            s = e.start
            if not alive[s] or rank[s] != e.rank:
                continue  # stale entry: that pair changed since it was pushed
            t = nxt[s]
            u = nxt[t]
            alive[t] = 0
            nxt[s] = u
            prv[u] = s
            r = _rank(ranks, p + s, nxt[u] - s) if u < n else _NONE
            rank[s] = r
            if r != _NONE:
                _push(heap, &size, r, s)
            if s > 0:
                q = prv[s]
                r = _rank(ranks, p + q, u - q)
                rank[q] = r
                if r != _NONE:
                    _push(heap, &size, r, q)
        m = 0
        s = 0
        while s < n:
            st[m] = s
            m += 1
            s = nxt[s]
        st[m] = n
        return m
    finally:
        PyMem_Free(nxt)
        PyMem_Free(prv)
        PyMem_Free(rank)
        PyMem_Free(heap)
        PyMem_Free(alive)


cdef list _run(bytes piece, dict ranks, int mode, int want):
    # mode: 0 auto, 1 linear, 2 heap. want: 0 token ids, 1 boundaries, 2 [number of parts].
    cdef Py_ssize_t n = PyBytes_GET_SIZE(piece), m, i
    cdef const char* p = PyBytes_AS_STRING(piece)
    cdef Py_ssize_t* st = <Py_ssize_t*>PyMem_Malloc((n + 1) * sizeof(Py_ssize_t))
    cdef list out
    if st == NULL:
        raise MemoryError()
    try:
        if mode == 2 or (mode == 0 and n >= _HEAP_MIN):
            m = _bounds_heap(p, n, ranks, st)
        else:
            m = _bounds_linear(p, n, ranks, st)
        if want == 2:
            return [m]
        out = []
        if want == 1:
            for i in range(m + 1):
                out.append(st[i])
        else:
            for i in range(m):
                out.append(ranks[PyBytes_FromStringAndSize(p + st[i], st[i + 1] - st[i])])
        return out
    finally:
        PyMem_Free(st)


def _bounds(bytes piece, dict ranks, bint heap):
    """Part boundaries (first 0, last len(piece)); exposed so tests can check both strategies."""
    return _run(piece, ranks, 2 if heap else 1, 1)


def encode_piece(bytes piece, dict ranks):
    """Token ids of one pre-tokenised piece (its UTF-8 bytes)."""
    token = ranks.get(piece)
    if token is not None:
        return [token]
    if not piece:
        return []
    return _run(piece, ranks, 0, 0)


def count_piece(bytes piece, dict ranks):
    """``len(encode_piece(piece, ranks))`` without building the list (assumes every byte is ranked)."""
    if piece in ranks:
        return 1
    if not piece:
        return 0
    return _run(piece, ranks, 0, 2)[0]
