"""Offline, tiktoken-compatible encodings (cl100k_base, o200k_base) for counting tokens.

The rank files come from the installed ``bpe_openai`` wheel (no network), are checked against the
SHA-256 that tiktoken pins, and are loaded lazily once per process. Pre-tokenisation uses the
``regex`` module with tiktoken's exact patterns; the byte-pair merge is ``omen._fast.bpe``.
Special tokens such as ``<|endoftext|>`` are encoded as ordinary text (tiktoken's
``encode_ordinary``): a prompt that contains them is text, not control tokens.
"""

from __future__ import annotations

import binascii
import gzip
import hashlib
import importlib.util
import os
import threading
from functools import lru_cache
from pathlib import Path
from types import ModuleType

import regex

from omen._fast import load

_bpe = load("bpe")

PIECE_CACHE_SIZE = 32768  # per cache and encoding: most pieces repeat a lot; ~200 B per entry

_CL100K_PAT = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
_O200K_PAT = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)

# name -> (pat_str, special tokens, sha256 of the uncompressed rank file as tiktoken pins it)
_SPECS: dict[str, tuple[str, dict[str, int], str]] = {
    "cl100k_base": (
        _CL100K_PAT,
        {
            "<|endoftext|>": 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            "<|endofprompt|>": 100276,
        },
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
    "o200k_base": (
        _O200K_PAT,
        {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
}

ENCODING_NAMES = tuple(_SPECS)


def _rank_file(name: str) -> bytes:
    # OMEN_TOKENIZER_DATA may point at a directory of <name>.tiktoken[.gz] files; else bpe_openai's.
    dirs = []
    if os.environ.get("OMEN_TOKENIZER_DATA"):
        dirs.append(Path(os.environ["OMEN_TOKENIZER_DATA"]))
    spec = importlib.util.find_spec("bpe_openai")  # locate the wheel without importing its extension
    if spec is not None and spec.submodule_search_locations:
        dirs.append(Path(next(iter(spec.submodule_search_locations))) / "data")
    for d in dirs:
        if (d / f"{name}.tiktoken.gz").is_file():
            return gzip.decompress((d / f"{name}.tiktoken.gz").read_bytes())
        if (d / f"{name}.tiktoken").is_file():
            return (d / f"{name}.tiktoken").read_bytes()
    raise FileNotFoundError(f"no rank file for {name!r} (install bpe-openai or set OMEN_TOKENIZER_DATA)")


def load_ranks(name: str) -> dict[bytes, int]:
    """The mergeable ranks of ``name``, verified against tiktoken's pinned hash."""
    raw = _rank_file(name)
    expected = _SPECS[name][2]
    if hashlib.sha256(raw).hexdigest() != expected:
        raise ValueError(f"rank file for {name!r} does not match tiktoken's pinned SHA-256")
    ranks: dict[bytes, int] = {}
    a2b = binascii.a2b_base64
    for line in raw.splitlines():
        if line:
            token, rank = line.split()
            ranks[a2b(token)] = int(rank)
    return ranks


def _sanitize(text: str) -> str:
    # Lone surrogates cannot be UTF-8 encoded; tiktoken replaces them with U+FFFD the same way.
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


class Encoding:
    """``encode``/``count`` compatible with tiktoken's ``encode_ordinary`` for one encoding."""

    def __init__(
        self,
        name: str,
        pat_str: str,
        ranks: dict[bytes, int],
        special_tokens: dict[str, int],
        bpe: ModuleType | None = None,
    ):
        self.name = name
        self._bpe = bpe or _bpe  # tests pass each twin explicitly
        self.special_tokens = special_tokens
        self._ranks = ranks
        self._findall = regex.compile(pat_str).findall
        self._decoder: dict[int, bytes] | None = None
        # Caches keyed by the piece *str*: a hit skips both the UTF-8 encode and the merge.
        self._piece_count = lru_cache(maxsize=PIECE_CACHE_SIZE)(self._count_uncached)
        self._piece_ids = lru_cache(maxsize=PIECE_CACHE_SIZE)(self._ids_uncached)

    def __repr__(self) -> str:
        return f"<Encoding {self.name!r}>"

    @property
    def n_vocab(self) -> int:
        return max(max(self._ranks.values()), *self.special_tokens.values()) + 1

    def _count_uncached(self, piece: str) -> int:
        return self._bpe.count_piece(piece.encode("utf-8"), self._ranks)

    def _ids_uncached(self, piece: str) -> tuple[int, ...]:
        return tuple(self._bpe.encode_piece(piece.encode("utf-8"), self._ranks))

    def encode(self, text: str) -> list[int]:
        try:
            pieces = [self._piece_ids(p) for p in self._findall(text)]
        except UnicodeEncodeError:
            pieces = [self._piece_ids(p) for p in self._findall(_sanitize(text))]
        return [t for ids in pieces for t in ids]

    def count(self, text: str) -> int:
        try:
            return sum(map(self._piece_count, self._findall(text)))
        except UnicodeEncodeError:
            return sum(map(self._piece_count, self._findall(_sanitize(text))))

    def decode_bytes(self, tokens: list[int]) -> bytes:
        if self._decoder is None:
            decoder = {rank: token for token, rank in self._ranks.items()}
            decoder.update((rank, token.encode()) for token, rank in self.special_tokens.items())
            self._decoder = decoder
        return b"".join(self._decoder[t] for t in tokens)

    def decode(self, tokens: list[int]) -> str:
        return self.decode_bytes(tokens).decode("utf-8", "replace")


_lock = threading.Lock()
_encodings: dict[str, Encoding] = {}


def get_encoding(name: str) -> Encoding:
    """The process-wide ``Encoding`` called ``name`` (loaded on first use)."""
    enc = _encodings.get(name)
    if enc is not None:
        return enc
    if name not in _SPECS:
        raise ValueError(f"unknown encoding {name!r}; known: {', '.join(ENCODING_NAMES)}")
    with _lock:
        enc = _encodings.get(name)
        if enc is None:
            pat_str, special, _ = _SPECS[name]
            enc = _encodings[name] = Encoding(name, pat_str, load_ranks(name), dict(special))
    return enc


_O200K_PREFIXES = ("gpt-4o", "chatgpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "gpt-oss")
_CL100K_PREFIXES = (
    "gpt-4",
    "gpt-3.5",
    "gpt-35",  # Azure spells gpt-3.5 this way
    "text-embedding-3",
    "text-embedding-ada-002",
    "davinci-002",
    "babbage-002",
)


@lru_cache(maxsize=4096)
def encoding_for_model(model: str) -> str:
    """Encoding name for a model id; o200k_base (the current family) when the model is unknown.

    Provider prefixes ("openai/gpt-4o", "azure/gpt-35-turbo") and fine-tune ids ("ft:gpt-4o:org::x")
    are stripped first.
    """
    m = model.strip().lower().rsplit("/", 1)[-1]
    if m.startswith("ft:"):
        m = m[3:]
    if m.startswith(_O200K_PREFIXES):
        return "o200k_base"
    if m.startswith(_CL100K_PREFIXES):
        return "cl100k_base"
    return "o200k_base"


def count_text(text: str, model: str) -> int:
    """Tokens in ``text`` for ``model``'s encoding."""
    return get_encoding(encoding_for_model(model)).count(text)
