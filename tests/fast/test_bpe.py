"""Byte-pair-merge core against tiktoken's own single-piece encoder, for both twins (fixture ``bpe``)."""

from __future__ import annotations

import random

import pytest
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st

from omen.tokens.encoding import _SPECS, load_ranks


@pytest.fixture(scope="session", params=["cl100k_base", "o200k_base"])
def ref(request: pytest.FixtureRequest) -> tuple[dict[bytes, int], tiktoken.Encoding]:
    """(ranks, tiktoken built offline from the same ranks)."""
    name = request.param
    ranks = load_ranks(name)
    pat, special, _ = _SPECS[name]
    return ranks, tiktoken.Encoding(f"{name}-offline", pat_str=pat, mergeable_ranks=ranks, special_tokens=special)


PIECES = [
    b"hello", b" world", b"tokenization", b" antidisestablishmentarianism", b"\xe4\xb8\xad\xe6\x96\x87",
    "Привет".encode(), "👨‍👩‍👧‍👦".encode(), b"    ", b"\n\n\n", b"1234", b"x" * 3,
    b"\xff\xfe\xfd", b"a" * 127, b"a" * 128, b"ab" * 400, b" " * 1000, "日本語".encode() * 50,
]  # fmt: skip


@pytest.mark.parametrize("piece", PIECES)
def test_matches_tiktoken(bpe, ref, piece):
    ranks, enc = ref
    expected = enc._encode_single_piece(piece)
    assert bpe.encode_piece(piece, ranks) == expected
    assert bpe.count_piece(piece, ranks) == len(expected)


def test_whole_piece_and_edge_cases(bpe, ref):
    ranks, _ = ref
    assert bpe.encode_piece(b"hello", ranks) == [ranks[b"hello"]]
    assert bpe.count_piece(b"hello", ranks) == 1
    assert bpe.encode_piece(b"", ranks) == []
    assert bpe.count_piece(b"", ranks) == 0
    assert bpe.encode_piece(b"\x00", ranks) == [ranks[b"\x00"]]


def test_unranked_byte_raises_keyerror(bpe):
    with pytest.raises(KeyError):
        bpe.encode_piece(b"ab", {b"a": 0})


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=300))
def test_property_random_bytes_match_tiktoken(bpe, ref, piece):
    ranks, enc = ref
    expected = enc._encode_single_piece(piece)
    assert bpe.encode_piece(piece, ranks) == expected
    assert bpe.count_piece(piece, ranks) == len(expected)


def _toy_ranks(seed: int) -> dict[bytes, int]:
    """Every byte of a small alphabet plus random merges: many merges, many equal-rank positions."""
    rng = random.Random(seed)
    alphabet = b"abc"
    ranks = {bytes([c]): i for i, c in enumerate(alphabet)}
    tokens = [bytes([c]) for c in alphabet]
    while len(ranks) < 40:
        t = rng.choice(tokens) + rng.choice(tokens)
        if t not in ranks and len(t) <= 8:
            ranks[t] = len(ranks)
            tokens.append(t)
    return ranks


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 50), st.binary(min_size=0, max_size=200).map(lambda b: bytes(b"abc"[x % 3] for x in b)))
def test_property_linear_and_heap_strategies_agree(bpe, seed, piece):
    ranks = _toy_ranks(seed)
    assert bpe._bounds(piece, ranks, True) == bpe._bounds(piece, ranks, False)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_property_twins_agree(both_bpe, ref, piece):
    compiled, pure = both_bpe
    ranks, _ = ref
    assert compiled.encode_piece(piece, ranks) == pure.encode_piece(piece, ranks)
    assert compiled.count_piece(piece, ranks) == pure.count_piece(piece, ranks)
    for heap in (False, True):
        assert compiled._bounds(piece, ranks, heap) == pure._bounds(piece, ranks, heap)


def test_long_piece_is_not_quadratic(bpe, ref):
    ranks, enc = ref
    piece = b"qz" * 20_000  # one letter-only pre-token of 40 kB
    assert bpe.encode_piece(piece, ranks) == enc._encode_single_piece(piece)
