"""``model="auto"`` intent classifier: classifications/s, compiled vs pure-Python twin, side by side.

    .venv/bin/python bench/intent_classifier.py [--repeat 5] [--markdown]

Workloads (the labelled prompts of tests/routing/test_intent.py):
- text: ``classify_weighted`` on the weighted texts of every code/reasoning/chat prompt (the classifier alone);
- classify: ``omen.routing.intent.classify`` on every labelled prompt except the long ones (hints, image and
  tool checks, the length bound, then the text classifier; no tokenizing happens for these);
- classify, long: the long prompts, where the length check tokenizes (same bpe twin for both columns: the
  difference is the classifier only, which the long prompts never reach);
- scan 24k: one ``scan`` of a 24,000-character mixed text (about the default long threshold).
Each figure is the best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.routing.test_intent: the prompts

from omen.routing import intent as routing_intent
from tests.routing.test_intent import LABELLED, THRESHOLD, request


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def twins() -> tuple[ModuleType | None, ModuleType]:
    pure = importlib.import_module("omen._fast.intent_py")
    try:
        compiled = importlib.import_module("omen._fast.intent")
    except ImportError:
        compiled = None
    return compiled, pure


def run(repeat: int) -> list[tuple[str, int, float | None, float]]:
    """(workload, items, compiled items/s or None, pure items/s)."""
    compiled, pure = twins()
    text_intents = ("code", "reasoning", "chat")
    text_cases = [routing_intent.weighted_texts(request(p)) for e, _, p in LABELLED if e in text_intents]
    short = [request(p) for e, _, p in LABELLED if e != "long"]
    long = [request(p) for e, _, p in LABELLED if e == "long"]
    corpus = "\n".join(p if isinstance(p, str) else "" for e, _, p in LABELLED if e != "long")
    big = (corpus * (24_000 // len(corpus) + 1))[:24_000]
    rounds = 20  # passes over the prompt list per timed run

    def texts(mod: ModuleType) -> Callable[[], object]:
        return lambda: [mod.classify_weighted(parts) for _ in range(rounds) for parts in text_cases]

    def full(mod: ModuleType, requests: list, n: int) -> Callable[[], object]:
        def go() -> None:
            saved = routing_intent._fast
            routing_intent._fast = mod
            try:
                for _ in range(n):
                    for r in requests:
                        routing_intent.classify(r, {}, THRESHOLD)
            finally:
                routing_intent._fast = saved

        return go

    def scan(mod: ModuleType) -> Callable[[], object]:
        return lambda: [mod.scan(big) for _ in range(5)]

    for r in long:  # warm the tokenizer (rank files, piece cache) before timing
        routing_intent.classify(r, {}, THRESHOLD)
    rows = []
    workloads = [
        ("text (classify_weighted)", len(text_cases) * rounds, texts),
        ("classify (no long prompts)", len(short) * rounds, lambda m: full(m, short, rounds)),
        ("classify (long prompts, tokenized)", len(long), lambda m: full(m, long, 1)),
        ("scan of 24,000 chars", 5, scan),
    ]
    for label, items, make in workloads:
        c = items / best(make(compiled), repeat) if compiled else None
        p = items / best(make(pure), repeat)
        rows.append((label, items, c, p))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    rows = run(args.repeat)
    head = ("workload", "items", "compiled /s", "pure /s", "speed-up")

    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:,.0f}"

    lines = [(label, str(n), fmt(c), fmt(p), f"{c / p:.1f}x" if c else "-") for label, n, c, p in rows]
    if args.markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for line in lines:
            print("| " + " | ".join(line) + " |")
    else:
        widths = [max(len(r[i]) for r in [head, *lines]) for i in range(len(head))]
        for line in [head, *lines]:
            cells = (c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True)))
            print("  ".join(cells))


if __name__ == "__main__":
    main()
