"""Routing decision cost: decisions/s of ``scoring.best`` over 2, 8 and 32 candidates, compiled vs
pure Python, side by side in one run.

    .venv/bin/python bench/routing_scoring.py [--repeat 5] [--decisions 50000] [--markdown]

One decision = ``best(rows, weights)`` on a list of candidate rows (6-tuples of floats, as the router
builds them from stats, breaker and limiter); building the rows is not included. Row sets are drawn
once with a fixed seed (plausible health, latency, error rate, cost, capacity and fit values) and
cycled, so both backends score exactly the same inputs. Each figure is the best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import random
import shlex
import sys
import time
from types import ModuleType

SIZES = (2, 8, 32)
SETS = 512  # distinct row sets per size (cycled)
WEIGHTS = (1.0, 1.0, 1.0, 0.5, 0.5, 1.0)  # ScoreWeights defaults


def row_sets(n: int, rng: random.Random) -> list[list[tuple[float, ...]]]:
    out = []
    for _ in range(SETS):
        rows = []
        for _ in range(n):
            rows.append(
                (
                    rng.choice((1.0, 1.0, 1.0, 0.5, 0.0)),  # health
                    rng.lognormvariate(6.0, 0.8),  # latency ms, ~400 ms median
                    rng.betavariate(1, 30),  # error rate
                    rng.uniform(0.0, 15.0) * 1e-6 * rng.randint(100, 4000),  # request cost, USD
                    rng.random(),  # free capacity
                    rng.choice((1.0, 1.0, 0.5)),  # capability fit
                )
            )
        out.append(rows)
    return out


def measure(module: ModuleType, sets: list[list[tuple[float, ...]]], decisions: int, repeat: int) -> float:
    """Best decisions/s over ``repeat`` runs of ``decisions`` calls."""
    best = module.best
    weights = WEIGHTS
    k = len(sets)
    order = [sets[i % k] for i in range(decisions)]
    top = 0.0
    for _ in range(repeat):
        t0 = time.perf_counter()
        for rows in order:
            best(rows, weights)
        elapsed = time.perf_counter() - t0
        top = max(top, decisions / elapsed)
    return top


def load(kind: str) -> ModuleType | None:
    name = "omen._fast.scoring" if kind == "compiled" else "omen._fast.scoring_py"
    try:
        module = importlib.import_module(name)
    except ImportError:
        return None
    if kind == "compiled" and module.__file__ and module.__file__.endswith(".py"):
        return None
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--decisions", type=int, default=50_000)
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = parser.parse_args()

    compiled, pure = load("compiled"), load("pure")
    assert pure is not None
    rng = random.Random(20260522)
    workloads = {n: row_sets(n, rng) for n in SIZES}
    # Same inputs, same answers: a benchmark of two twins that disagree would be meaningless.
    if compiled is not None:
        for sets in workloads.values():
            assert [compiled.best(r, WEIGHTS) for r in sets] == [pure.best(r, WEIGHTS) for r in sets]

    print(f"command: {shlex.join([os.path.relpath(sys.executable), *sys.argv])}")
    runs = f"{args.decisions} decisions x best of {args.repeat}"
    print(f"python {platform.python_version()} on {platform.machine()}; {runs}")
    header = [
        "candidates",
        "compiled decisions/s",
        "pure decisions/s",
        "compiled/pure",
        "compiled µs/dec",
        "pure µs/dec",
    ]
    lines = []
    for n in SIZES:
        p = measure(pure, workloads[n], args.decisions, args.repeat)
        c = measure(compiled, workloads[n], args.decisions, args.repeat) if compiled is not None else None
        lines.append(
            [
                str(n),
                f"{c:,.0f}" if c else "not built",
                f"{p:,.0f}",
                f"{c / p:.1f}x" if c else "-",
                f"{1e6 / c:.2f}" if c else "-",
                f"{1e6 / p:.2f}",
            ]
        )
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for line in lines:
            print("| " + " | ".join(line) + " |")
    else:
        widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
        print("  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)))
        for line in lines:
            print("  ".join(v.rjust(w) for v, w in zip(line, widths, strict=True)))


if __name__ == "__main__":
    main()
