"""Pure-Python twin of ``omen._fast.bpe``: the byte-pair-merge core of a tiktoken-compatible BPE.

The rule is tiktoken's: start from single bytes, repeatedly merge the adjacent pair whose
concatenation has the lowest rank (leftmost on a tie) until no adjacent pair is in ``ranks``.
Short pieces use tiktoken's linear scan; long ones (a long whitespace run, a letter-only blob) use a
heap so the cost stays O(n log n) instead of O(n^2). Both strategies pick the same merge each step.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping

_NONE = 1 << 62  # "no merge": larger than any rank
HEAP_MIN = 128  # piece length from which the heap strategy is used


def _bounds_linear(piece: bytes, ranks: Mapping[bytes, int]) -> list[int]:
    get = ranks.get
    n = len(piece)
    starts = list(range(n + 1))
    # pair[i]: rank of part i + part i+1
    pair = [get(piece[i : i + 2], _NONE) for i in range(n - 1)]
    while pair:
        best = min(pair)
        if best == _NONE:
            break
        i = pair.index(best)  # leftmost minimum, like tiktoken
        del starts[i + 1]
        del pair[i]
        if i > 0:
            pair[i - 1] = get(piece[starts[i - 1] : starts[i + 1]], _NONE)
        if i < len(pair):
            pair[i] = get(piece[starts[i] : starts[i + 2]], _NONE)
    return starts


def _bounds_heap(piece: bytes, ranks: Mapping[bytes, int]) -> list[int]:
    get = ranks.get
    n = len(piece)
    nxt = list(range(1, n + 2))
    prv = list(range(-1, n))
    alive = [True] * (n + 1)
    rank = [get(piece[i : i + 2], _NONE) for i in range(n - 1)] + [_NONE, _NONE]
    heap = [(r, i) for i, r in enumerate(rank) if r != _NONE]
    heapq.heapify(heap)
    pop, push = heapq.heappop, heapq.heappush
    while heap:
        r, s = pop(heap)
        if not alive[s] or rank[s] != r:
            continue  # stale entry: that pair changed since it was pushed
        t = nxt[s]
        u = nxt[t]
        alive[t] = False
        nxt[s] = u
        prv[u] = s
        r = get(piece[s : nxt[u]], _NONE) if u < n else _NONE
        rank[s] = r
        if r != _NONE:
            push(heap, (r, s))
        if s > 0:
            q = prv[s]
            r = get(piece[q:u], _NONE)
            rank[q] = r
            if r != _NONE:
                push(heap, (r, q))
    starts = []
    s = 0
    while s < n:
        starts.append(s)
        s = nxt[s]
    starts.append(n)
    return starts


def _bounds(piece: bytes, ranks: Mapping[bytes, int], heap: bool) -> list[int]:
    """Part boundaries (first 0, last len(piece)); exposed so tests can check both strategies."""
    return _bounds_heap(piece, ranks) if heap else _bounds_linear(piece, ranks)


def encode_piece(piece: bytes, ranks: Mapping[bytes, int]) -> list[int]:
    """Token ids of one pre-tokenised piece (its UTF-8 bytes)."""
    token = ranks.get(piece)
    if token is not None:
        return [token]
    if not piece:
        return []
    starts = _bounds_heap(piece, ranks) if len(piece) >= HEAP_MIN else _bounds_linear(piece, ranks)
    return [ranks[piece[starts[i] : starts[i + 1]]] for i in range(len(starts) - 1)]


def count_piece(piece: bytes, ranks: Mapping[bytes, int]) -> int:
    """``len(encode_piece(piece, ranks))`` without building the list (assumes every byte is ranked)."""
    if piece in ranks:
        return 1
    if not piece:
        return 0
    starts = _bounds_heap(piece, ranks) if len(piece) >= HEAP_MIN else _bounds_linear(piece, ranks)
    return len(starts) - 1
