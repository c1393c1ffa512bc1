"""A/B and canary arms: sticky hashing is stable across processes and both choosers hit their weights."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import Counter

import pytest

from omen.routing.split import random_arm, sticky_arm

AB = [("control", 70.0), ("treatment", 30.0)]
CANARY = [("stable", 95.0), ("canary", 5.0)]
N = 10_000


def shares(picks: list[str]) -> dict[str, float]:
    counts = Counter(picks)
    return {arm: 100.0 * n / len(picks) for arm, n in counts.items()}


def assert_within(observed: dict[str, float], arms: list[tuple[str, float]], tolerance_pp: float = 2.0) -> None:
    total = sum(w for _, w in arms)
    for name, weight in arms:
        target = 100.0 * weight / total
        assert abs(observed.get(name, 0.0) - target) <= tolerance_pp, (name, observed, target)


@pytest.mark.parametrize("arms", [AB, CANARY, [("a", 50), ("b", 30), ("c", 20)], [("x", 3), ("y", 1)]])
def test_sticky_arms_over_distinct_users_land_on_the_weights(arms) -> None:
    observed = shares([sticky_arm(f"user-{i}", "exp", arms) for i in range(N)])
    assert_within(observed, arms)


@pytest.mark.parametrize("arms", [AB, CANARY, [("a", 50), ("b", 30), ("c", 20)], [("x", 3), ("y", 1)]])
def test_random_arms_land_on_the_weights(arms) -> None:
    rng = random.Random(1234)
    observed = shares([random_arm(rng, arms) for _ in range(N)])
    assert_within(observed, arms)


def test_canary_five_percent() -> None:
    sticky = shares([sticky_arm(f"u{i}@example.com", "canary-rollout", CANARY) for i in range(N)])
    rng = random.Random(99)
    drawn = shares([random_arm(rng, CANARY) for _ in range(N)])
    for observed in (sticky, drawn):
        assert 3.0 <= observed["canary"] <= 7.0, observed


def test_a_sticky_key_never_switches_arm() -> None:
    first = {f"user-{i}": sticky_arm(f"user-{i}", "exp", AB) for i in range(50)}
    for _ in range(1_000):
        for key, arm in first.items():
            assert sticky_arm(key, "exp", AB) == arm


def test_sticky_arm_is_the_same_in_another_process_with_another_hash_seed() -> None:
    # Python's hash() of a str changes with PYTHONHASHSEED; the arm must not.
    keys = [f"user-{i}" for i in range(300)] + ["", "ключ", "用户", "a" * 500]
    here = [sticky_arm(k, "a-very-long-experiment-name-beyond-16-bytes", AB) for k in keys]
    code = (
        "import sys, json\nfrom omen.routing.split import sticky_arm\n"
        "keys = json.loads(sys.stdin.read())\n"
        "print(json.dumps([sticky_arm(k, 'a-very-long-experiment-name-beyond-16-bytes', "
        "[('control', 70.0), ('treatment', 30.0)]) for k in keys]))\n"
    )
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code], input=json.dumps(keys), capture_output=True, text=True, env=env, check=True
        )
        assert json.loads(out.stdout) == here


def test_salts_make_experiments_independent() -> None:
    arms = [("a", 50.0), ("b", 50.0)]
    both_a = sum(
        sticky_arm(f"u{i}", "exp-1", arms) == "a" and sticky_arm(f"u{i}", "exp-2", arms) == "a" for i in range(N)
    )
    assert abs(100.0 * both_a / N - 25.0) <= 2.0  # independent: a quarter are in arm a of both


def test_zero_weight_arms_are_never_chosen_and_bad_weights_refused() -> None:
    arms = [("off", 0.0), ("on", 1.0), ("also-off", 0.0)]
    rng = random.Random(3)
    assert {random_arm(rng, arms) for _ in range(1_000)} == {"on"}
    assert {sticky_arm(f"k{i}", "s", arms) for i in range(1_000)} == {"on"}
    with pytest.raises(ValueError):
        random_arm(rng, [("a", 0.0)])
    with pytest.raises(ValueError):
        sticky_arm("k", "s", [])
    with pytest.raises(ValueError):
        random_arm(rng, [("a", 1.0), ("b", -1.0)])


def test_random_arm_uses_the_injected_rng() -> None:
    picks_1 = [random_arm(random.Random(5), AB) for _ in range(3)]
    rng_a, rng_b = random.Random(42), random.Random(42)
    assert [random_arm(rng_a, AB) for _ in range(200)] == [random_arm(rng_b, AB) for _ in range(200)]
    assert len(set(picks_1)) == 1  # a fresh RNG with the same seed draws the same first arm
