"""Choosing an arm of an A/B split or canary: sticky by a stable hash, or random by weight.

An arm is ``(name, weight)``; weights are shares and need not sum to 100. Both choosers map a number
``u`` in [0, 1) onto the arms' cumulative shares, so a sticky split over many keys and a random split
over many requests land on the same proportions.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

Arms = Sequence[tuple[str, float]]

_SCALE = float(1 << 64)


def sticky_arm(key: str, salt: str, arms: Arms) -> str:
    """The arm for ``key``: the same key (and salt and arms) gets the same arm in every process, forever.

    blake2b, not ``hash()``: Python salts ``hash(str)`` per process (PYTHONHASHSEED), so it would move a
    user between arms on every restart and disagree between workers. The salt (a rule's name) keeps two
    experiments independent: being in arm B of one says nothing about the arm of another.
    """
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8, person=_person(salt)).digest()
    return _pick(int.from_bytes(digest, "big") / _SCALE, arms)


def random_arm(rng: random.Random, arms: Arms) -> str:
    """An arm drawn by weight from ``rng`` (injected, so tests seed it and workers do not share one)."""
    return _pick(rng.random(), arms)


def _person(salt: str) -> bytes:
    # blake2b takes at most 16 bytes of personalisation; a long salt is folded into 16 by hashing it.
    raw = salt.encode("utf-8")
    return raw if len(raw) <= 16 else hashlib.blake2b(raw, digest_size=16).digest()


def _pick(u: float, arms: Arms) -> str:
    """The arm whose cumulative share interval holds ``u`` (0 <= u < 1); weight-0 arms are never chosen."""
    total = 0.0
    for _, weight in arms:
        if weight < 0:
            raise ValueError(f"arm weights must not be negative, got {weight}")
        total += weight
    if total <= 0:
        raise ValueError("a split needs at least one arm with a positive weight")
    point = u * total
    running = 0.0
    last = ""
    for name, weight in arms:
        if weight <= 0:
            continue
        running += weight
        last = name
        if point < running:
            return name
    return last  # float rounding can leave point == total; the last positive arm owns the top edge
