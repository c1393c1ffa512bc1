"""Compiled vs pure-Python speed of each ``omen._fast`` module, in one run.

    .venv/bin/python bench/fast_modules.py [--repeat 5] [--markdown]

Workloads (fixed seed, so runs are comparable):
- SSE decode: ~1 MB of chat.completion.chunk events fed in random 1-400 B network chunks;
- SSE encode: ``encode_data`` on each chunk's JSON payload;
- LineSplitter: ~1 MB of Ollama-style NDJSON in the same kind of chunks;
- BPE: ``count_piece`` on every distinct pre-token of a mixed corpus (no cache: the raw merge cost);
- token counting: ``Encoding.count`` on the mixed corpus, cold (empty piece cache) and warm.
Each figure is the best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import importlib
import random
import time
from collections.abc import Callable
from types import ModuleType

import orjson

from omen.tokens.encoding import _SPECS, Encoding, get_encoding

MB = 1_000_000
REFERENCE: float | None = None  # tiktoken MB/s on the counting corpus, when installed
_TEXT = (
    "the a model token stream gateway latency of to and in is it for on with as fast OpenAI relay "
    "provider, request. response! chunk: 42 3.14 日本語 Привет 😀"
)
WORDS = [*_TEXT.split(" "), "\n"]


def _chunks(blob: bytes, rng: random.Random, lo: int = 1, hi: int = 400) -> list[bytes]:
    out, pos = [], 0
    while pos < len(blob):
        n = rng.randint(lo, hi)
        out.append(blob[pos : pos + n])
        pos += n
    return out


def _content(rng: random.Random) -> str:
    return "".join(rng.choice(WORDS) + " " for _ in range(rng.randint(1, 4)))


def sse_payloads(rng: random.Random, size: int = MB) -> list[bytes]:
    payloads, total, i = [], 0, 0
    while total < size:
        chunk = {
            "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
            "object": "chat.completion.chunk",
            "created": 1741570283 + i // 50,
            "model": "gpt-4o-2024-08-06",
            "system_fingerprint": "fp_f9f4fb6dbf",
            "choices": [{"index": 0, "delta": {"content": _content(rng)}, "logprobs": None, "finish_reason": None}],
        }
        data = orjson.dumps(chunk)
        payloads.append(data)
        total += len(data) + 8
        i += 1
    return payloads


def ndjson(rng: random.Random, size: int = MB) -> bytes:
    lines, total = [], 0
    while total < size:
        line = orjson.dumps(
            {
                "model": "llama3.1:8b",
                "created_at": "2026-01-01T00:00:00.000000Z",
                "message": {"role": "assistant", "content": _content(rng)},
                "done": False,
            }
        )
        lines.append(line)
        total += len(line) + 1
    return b"\n".join(lines) + b"\n"


CORPUS = (
    "In the beginning the Universe was created. This has made a lot of people very angry and been widely "
    "regarded as a bad move. It's 2026; we've got 1,234,567 tokens to count!\n"
    'def relay(chunk: bytes) -> None:\n    if chunk.startswith(b"data: "):\n        send(chunk[6:])\n\n'
    '{"model":"gpt-4o","messages":[{"role":"user","content":"Hello, world"}],"stream":true}\n'
    "日本語のテキストと中文文本, 还有한국어 문장도 있습니다。Съешь же ещё этих мягких французских булок.\n"
    "مرحبا بالعالم 👨‍👩‍👧‍👦 🏳️‍🌈    \t\t\n\n"
)
_SYL = "ka lo mi re tsu vin qua zor pel ix ath eon bru sch ght ще лю мир 语 文 ك ت"
_SYLLABLES = [*_SYL.split(" "), "😀"]


def mixed_text(rng: random.Random, size: int) -> str:
    """Non-repeating text: real sentences, pseudo-words (so pieces need merging), numbers, code."""
    parts, total = [], 0
    while total < size:
        kind = rng.random()
        if kind < 0.3:
            s = CORPUS[rng.randrange(len(CORPUS) - 80) :][: rng.randint(20, 80)]
        elif kind < 0.8:
            s = " ".join("".join(rng.choices(_SYLLABLES, k=rng.randint(1, 4))) for _ in range(rng.randint(3, 12)))
        elif kind < 0.9:
            s = f"{rng.randint(0, 10**9)}.{rng.randint(0, 999)} x{rng.random():.5f}"
        else:
            s = f"    var_{rng.randint(0, 9999)} = {{'k{rng.randint(0, 99)}': [{rng.randint(0, 999)}]}}\n"
        parts.append(s + rng.choice((" ", ". ", "\n", ", ")))
        total += len(s) + 1
    return "".join(parts)


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _twins(name: str) -> tuple[ModuleType | None, ModuleType]:
    try:
        compiled = importlib.import_module(f"omen._fast.{name}")
    except ImportError:
        compiled = None
    return compiled, importlib.import_module(f"omen._fast.{name}_py")


def run(repeat: int) -> list[tuple[str, str, float | None, float]]:
    """Rows of (benchmark, unit, compiled rate, pure rate)."""
    rng = random.Random(1234)
    rows = []
    sse_c, sse_p = _twins("sse")
    bpe_c, bpe_p = _twins("bpe")

    payloads = sse_payloads(rng)
    stream = b"".join(b"data: " + p + b"\n\n" for p in payloads) + b"data: [DONE]\n\n"
    chunks = _chunks(stream, rng)
    nd = ndjson(rng)
    nd_chunks = _chunks(nd, rng)

    def decode(mod: ModuleType) -> Callable[[], object]:
        def go() -> None:
            d = mod.SSEDecoder()
            feed = d.feed
            n = 0
            for c in chunks:
                n += len(feed(c))
            assert n == len(payloads) + 1

        return go

    def encode(mod: ModuleType) -> Callable[[], object]:
        enc = mod.encode_data
        return lambda: [enc(p) for p in payloads]

    def lines(mod: ModuleType) -> Callable[[], object]:
        def go() -> None:
            s = mod.LineSplitter()
            for c in nd_chunks:
                s.feed(c)
            s.close()

        return go

    def rate_mb(fn: Callable[[], object], nbytes: int) -> float:
        return nbytes / best(fn, repeat) / MB

    def pair(label: str, unit: str, make: Callable[[ModuleType], Callable[[], object]], c, p, size: int) -> None:
        crate = rate_mb(make(c), size) if c is not None else None
        rows.append((label, unit, crate, rate_mb(make(p), size)))

    pair(
        f"SSE decode ({len(stream) / MB:.2f} MB, {len(chunks)} chunks of 1-400 B)",
        "MB/s",
        decode,
        sse_c,
        sse_p,
        len(stream),
    )
    pair(f"SSE encode_data ({len(payloads)} events)", "kops/s", encode, sse_c, sse_p, len(payloads) * 1000)
    pair(f"LineSplitter NDJSON ({len(nd) / MB:.2f} MB, {len(nd_chunks)} chunks)", "MB/s", lines, sse_c, sse_p, len(nd))

    name = "o200k_base"
    shared = get_encoding(name)
    corpus = mixed_text(rng, 250_000)
    pieces = sorted({p.encode() for p in shared._findall(corpus)})
    ranks = shared._ranks

    def merge(mod: ModuleType) -> Callable[[], object]:
        count = mod.count_piece
        return lambda: [count(p, ranks) for p in pieces]

    pair(
        f"BPE count_piece ({len(pieces)} distinct pieces, no cache)", "kops/s", merge, bpe_c, bpe_p, len(pieces) * 1000
    )

    def counting(mod: ModuleType, warm: bool) -> Callable[[], object]:
        enc = Encoding(name, _SPECS[name][0], ranks, shared.special_tokens, bpe=mod)

        def go() -> None:
            if not warm:
                enc._piece_count.cache_clear()
            enc.count(corpus)

        if warm:
            go()
        return go

    global REFERENCE
    try:  # context only: tiktoken's Rust core on the same text, built offline from the same ranks
        import tiktoken

        ref = tiktoken.Encoding(name, pat_str=_SPECS[name][0], mergeable_ranks=ranks, special_tokens={})
        REFERENCE = len(corpus.encode()) / best(lambda: ref.encode_ordinary(corpus), repeat) / MB
    except ImportError:
        REFERENCE = None

    for warm in (False, True):
        label = f"count {name} ({len(corpus.encode()) / MB:.2f} MB mixed text, {'warm' if warm else 'cold'} cache)"
        crate = rate_mb(counting(bpe_c, warm), len(corpus.encode())) if bpe_c is not None else None
        rows.append((label, "MB/s", crate, rate_mb(counting(bpe_p, warm), len(corpus.encode()))))
    return rows


def _fmt(rate: float | None) -> str:
    if rate is None:
        return "not built"
    return f"{rate:,.1f}" if rate < 100 else f"{rate:,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure; the best is kept")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table section")
    args = parser.parse_args()
    rows = run(args.repeat)
    table = []
    for label, unit, crate, prate in rows:
        ratio = f"x{crate / prate:.1f}" if crate is not None else "-"
        table.append((label, unit, _fmt(crate), _fmt(prate), ratio))
    header = ("benchmark", "unit", "compiled", "pure", "speed-up")
    if args.markdown:
        print("### omen._fast: compiled vs pure Python\n")
        print(f"`python bench/fast_modules.py --repeat {args.repeat}` (best of {args.repeat}).\n")
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join(["---", "---", "---:", "---:", "---:"]) + "|")
        for row in table:
            print("| " + " | ".join(row) + " |")
        if REFERENCE is not None:
            print(f"\nFor reference, tiktoken (Rust) encodes the same counting corpus at {REFERENCE:.1f} MB/s.")
        return
    widths = [max(len(str(r[i])) for r in [header, *table]) for i in range(len(header))]
    for i, row in enumerate([header, *table]):
        print(
            "  ".join(
                str(c).ljust(w) if j < 2 else str(c).rjust(w) for j, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if i == 0:
            print("  ".join("-" * w for w in widths))
    if REFERENCE is not None:
        print(f"reference: tiktoken (Rust) encodes the counting corpus at {REFERENCE:.1f} MB/s")


if __name__ == "__main__":
    main()
