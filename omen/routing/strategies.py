"""Ordering the deployments of one priority tier: the group's strategy puts the best first and the
rest in the order they are tried when the first fails.

- ``weighted``: weighted random order (each position drawn by weight among those left), so the first
  choice lands on each deployment in proportion to its weight.
- ``least-busy``: fewest requests in flight first (ties in random order, so idle deployments share).
- ``latency``: lowest EWMA time to first byte for streams, of total latency otherwise; deployments
  with no observations yet go first, so every one gets measured.
- ``cost``: cheapest for the request's estimated tokens (catalog/config prices); unknown prices last.
- ``score``: ``omen._fast.scoring`` over health, latency, error rate, cost, free capacity and
  capability fit, weighted by ``[routing.score]``.
- sticky groups (``sticky = "user" | "session"``): the deployment a stable hash of the user/session
  picks (weights are the A/B shares), then the others by weight.

Pure functions of the deployments' current state and an injected RNG; nothing here does I/O.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from omen._fast import load
from omen.resilience.health import HEALTH_SCORE
from omen.routing.deployments import Deployment
from omen.routing.split import sticky_arm

scoring = load("scoring")

# Scores a candidate carries into the explain output: the strategy's own figure for it.
Scored = list[tuple[Deployment, float | None]]


@dataclass(slots=True)
class StrategyInput:
    """What a strategy may look at besides the deployments (computed once per request)."""

    rng: random.Random
    stream: bool = False
    prompt_tokens: int = 0
    output_tokens: int = 0
    weights: tuple[float, float, float, float, float, float] = (1.0, 1.0, 1.0, 0.5, 0.5, 1.0)
    fit: Callable[[Deployment], float] | None = None  # capability fit 0..1 (1 = known to support all)
    user: str | None = None  # sticky groups' keys
    session: str | None = None


def weighted(tier: Sequence[Deployment], inp: StrategyInput) -> Scored:
    left = list(tier)
    out: Scored = []
    rng = inp.rng
    while len(left) > 1:
        total = sum(max(d.weight, 0.0) for d in left)
        if total <= 0:
            break
        point = rng.random() * total
        running = 0.0
        chosen = len(left) - 1
        for i, d in enumerate(left):
            running += max(d.weight, 0.0)
            if point < running:
                chosen = i
                break
        d = left.pop(chosen)
        out.append((d, d.weight))
    out.extend((d, d.weight) for d in left)
    return out


def least_busy(tier: Sequence[Deployment], inp: StrategyInput) -> Scored:
    rng = inp.rng
    keyed = sorted(((d.stats.in_flight, rng.random(), i) for i, d in enumerate(tier)))
    return [(tier[i], float(n)) for n, _, i in keyed]


def _latency_ms(d: Deployment, stream: bool) -> float | None:
    stats = d.stats
    if stats.requests == 0:
        return None
    return stats.ewma_ttft_ms if stream else stats.ewma_latency_ms


def latency(tier: Sequence[Deployment], inp: StrategyInput) -> Scored:
    rows = [(_latency_ms(d, inp.stream), i) for i, d in enumerate(tier)]
    # untried (None) first, then fastest; index keeps the order stable among equals
    rows.sort(key=lambda r: (r[0] is not None, r[0] or 0.0, r[1]))
    return [(tier[i], value) for value, i in rows]


def cost(tier: Sequence[Deployment], inp: StrategyInput) -> Scored:
    rows = [(d.cost(inp.prompt_tokens, inp.output_tokens), i) for i, d in enumerate(tier)]
    rows.sort(key=lambda r: (r[0] is None, r[0] or 0.0, r[1]))
    return [(tier[i], value) for value, i in rows]


def score_row(d: Deployment, inp: StrategyInput) -> tuple[float, float, float, float, float, float]:
    """The six inputs of ``scoring.scores`` for one deployment, in ScoreWeights order (raw cost in USD;
    an unknown price counts as free, as for a local model; no latency observed yet counts as 0 ms, so a
    new deployment gets tried)."""
    latency_ms = _latency_ms(d, inp.stream)
    price = d.cost(inp.prompt_tokens, inp.output_tokens)
    total, errors = d.stats.window_counts()
    return (
        HEALTH_SCORE.get(d.health(), 0.0),
        latency_ms if latency_ms is not None else 0.0,
        errors / total if total else 0.0,
        price if price is not None else 0.0,
        d.free_capacity(),
        inp.fit(d) if inp.fit is not None else 1.0,
    )


def score(tier: Sequence[Deployment], inp: StrategyInput) -> Scored:
    # raw costs: scoring makes them relative to the dearest candidate, as best() does
    values = scoring.scores([score_row(d, inp) for d in tier], inp.weights)
    order = sorted(range(len(tier)), key=lambda i: (-values[i], i))  # ties -> lowest index, as best()
    return [(tier[i], values[i]) for i in order]


def sticky(tier: Sequence[Deployment], inp: StrategyInput, key: str | None, salt: str) -> Scored:
    """``key`` (a user or session id) always gets the same deployment while the tier is unchanged;
    ``salt`` (the group name) keeps two groups' assignments independent."""
    if key is None or len(tier) < 2:
        return weighted(tier, inp)
    arms = [(d.id, d.weight) for d in tier]
    chosen = sticky_arm(key, salt, arms)
    first = next(d for d in tier if d.id == chosen)
    rest = weighted([d for d in tier if d is not first], inp)
    return [(first, first.weight), *rest]


STRATEGIES: dict[str, Callable[[Sequence[Deployment], StrategyInput], Scored]] = {
    "weighted": weighted,
    "least-busy": least_busy,
    "latency": latency,
    "cost": cost,
    "score": score,
}


def order_tier(strategy: str, tier: Sequence[Deployment], inp: StrategyInput) -> Scored:
    if len(tier) == 1:
        return [(tier[0], None)]
    return STRATEGIES[strategy](tier, inp)
