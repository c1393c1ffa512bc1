"""The ``score`` strategy's scoring function, against both twins (fixture ``scoring``), and the two
twins against each other bit for bit on random inputs (fixture ``both_scoring``)."""

from __future__ import annotations

import importlib
import math
import struct
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fast.conftest import compiled_or_skip

W_ALL = (1.0, 1.0, 1.0, 0.5, 0.5, 1.0)  # ScoreWeights defaults
ONLY = {
    name: tuple(1.0 if i == k else 0.0 for i in range(6))
    for k, name in enumerate(("health", "latency", "error_rate", "cost", "capacity", "capability"))
}


@pytest.fixture(scope="session", params=["compiled", "pure"])
def scoring(request: pytest.FixtureRequest) -> ModuleType:
    if request.param == "compiled":
        return compiled_or_skip("scoring")
    return importlib.import_module("omen._fast.scoring_py")


@pytest.fixture(scope="session")
def both_scoring() -> tuple[ModuleType, ModuleType]:
    return compiled_or_skip("scoring"), importlib.import_module("omen._fast.scoring_py")


def row(health=1.0, latency=100.0, errors=0.0, cost=1.0, free=1.0, fit=1.0) -> tuple[float, ...]:
    return (health, latency, errors, cost, free, fit)


# ---- the formula, one input at a time -------------------------------------------------------------


def test_health_term_is_the_clamped_health(scoring):
    assert scoring.score(0.5, 0, 0, 0, 0, 0, ONLY["health"]) == 0.5
    assert scoring.score(2.0, 0, 0, 0, 0, 0, ONLY["health"]) == 1.0
    assert scoring.score(-1.0, 0, 0, 0, 0, 0, ONLY["health"]) == 0.0


@pytest.mark.parametrize(("ms", "term"), [(0.0, 1.0), (1000.0, 0.5), (3000.0, 0.25), (-5.0, 1.0), (math.inf, 0.0)])
def test_latency_term(scoring, ms, term):
    assert scoring.score(0, ms, 0, 0, 0, 0, ONLY["latency"]) == term


def test_error_rate_and_cost_terms_are_one_minus(scoring):
    assert scoring.score(0, 0, 0.25, 0, 0, 0, ONLY["error_rate"]) == 0.75
    assert scoring.score(0, 0, 0, 0.4, 0, 0, ONLY["cost"]) == 0.6
    assert scoring.score(0, 0, 0, 7.0, 0, 0, ONLY["cost"]) == 0.0


def test_capacity_and_capability_terms(scoring):
    assert scoring.score(0, 0, 0, 0, 0.3, 0, ONLY["capacity"]) == 0.3
    assert scoring.score(0, 0, 0, 0, 0, 0.8, ONLY["capability"]) == 0.8


def test_score_is_the_weighted_mean(scoring):
    s = scoring.score(1.0, 1000.0, 0.5, 0.0, 0.25, 1.0, (1, 2, 1, 0, 4, 0))
    assert s == pytest.approx((1 * 1.0 + 2 * 0.5 + 1 * 0.5 + 4 * 0.25) / 8)
    assert 0.0 <= scoring.score(1, 0, 0, 0, 1, 1, W_ALL) <= 1.0
    assert scoring.score(1, 0, 0, 0, 1, 1, W_ALL) == 1.0


def test_nan_inputs_count_as_the_worst_value(scoring):
    nan = math.nan
    for name, args in [
        ("health", (nan, 0, 0, 0, 0, 0)),
        ("latency", (0, nan, 0, 0, 0, 0)),
        ("error_rate", (0, 0, nan, 0, 0, 0)),
        ("cost", (0, 0, 0, nan, 0, 0)),
        ("capacity", (0, 0, 0, 0, nan, 0)),
        ("capability", (0, 0, 0, 0, 0, nan)),
    ]:
        assert scoring.score(*args, ONLY[name]) == 0.0, name


def test_odd_weights(scoring):
    assert scoring.score(1, 0, 0, 0, 1, 1, (0, 0, 0, 0, 0, 0)) == 0.0
    # negative, NaN and infinite weights count as 0
    assert scoring.score(0.5, 0, 1, 1, 0, 0, (1, -3, math.nan, math.inf, 0, 0)) == 0.5
    assert scoring.score(0.5, 0, 0, 0, 0, 0, (1e300, 0, 0, 0, 0, 0)) == 0.5  # capped, sums stay finite
    with pytest.raises(ValueError, match="6 entries"):
        scoring.score(1, 0, 0, 0, 1, 1, (1, 1, 1))
    with pytest.raises(ValueError, match="6 entries"):
        scoring.best([row()], (1,) * 7)


# ---- best ----------------------------------------------------------------------------------------


def test_best_prefers_the_better_row(scoring):
    assert scoring.best([row(health=0.5), row(health=1.0)], W_ALL) == 1
    assert scoring.best([row(latency=2000), row(latency=200)], W_ALL) == 1
    assert scoring.best([row(errors=0.2), row(errors=0.0)], W_ALL) == 1
    assert scoring.best([row(cost=3.0), row(cost=0.5)], W_ALL) == 1
    assert scoring.best([row(free=0.0), row(free=0.9)], W_ALL) == 1
    assert scoring.best([row(fit=0.0), row(fit=1.0)], W_ALL) == 1


def test_ties_go_to_the_lowest_index(scoring):
    assert scoring.best([row(), row(), row()], W_ALL) == 0
    assert scoring.best([row(health=0), row(), row()], W_ALL) == 1
    assert scoring.best([row()] * 40, W_ALL) == 0  # more rows than the compiled stack buffer
    assert scoring.best([row(), row()], (0, 0, 0, 0, 0, 0)) == 0


def test_cost_is_relative_to_the_dearest_row(scoring):
    rows = [row(cost=2.0), row(cost=1.0), row(cost=0.0)]
    # cost weight only: terms 1 - cost/2 -> 0, 0.5, 1
    assert scoring.scores(rows, ONLY["cost"]) == [0.0, 0.5, 1.0]
    # the unit does not matter: dollars or micro-dollars give the same scores
    assert scoring.scores([row(cost=2e-6), row(cost=1e-6)], ONLY["cost"]) == [0.0, 0.5]
    # all free: every cost term is 1
    assert scoring.scores([row(cost=0.0), row(cost=0.0)], ONLY["cost"]) == [1.0, 1.0]
    # a NaN cost is infinitely dear, a negative one free
    assert scoring.scores([row(cost=math.nan), row(cost=5.0), row(cost=-1.0)], ONLY["cost"]) == [0.0, 1.0, 1.0]


def test_scores_match_best(scoring):
    rows = [row(0.5, 300, 0.1, 2.0, 0.5, 1.0), row(1.0, 900, 0.0, 1.0, 0.2, 0.5), row(1.0, 100, 0.3, 3.0, 1.0, 1.0)]
    s = scoring.scores(rows, W_ALL)
    assert scoring.best(rows, W_ALL) == s.index(max(s))
    assert s[1] == scoring.score(1.0, 900, 0.0, 1.0 / 3.0, 0.2, 0.5, W_ALL)


def test_rows_may_be_any_iterable_of_sequences(scoring):
    rows = [[1, 100, 0, 1, 1, 1], (0.5, 100, 0, 1, 1, 1)]
    assert scoring.best(iter(rows), W_ALL) == 0
    assert scoring.best(tuple(rows), list(W_ALL)) == 0


def test_best_of_nothing_or_bad_rows(scoring):
    with pytest.raises(ValueError, match="at least one row"):
        scoring.best([], W_ALL)
    with pytest.raises(ValueError):
        scoring.best([(1.0, 2.0)], W_ALL)
    assert scoring.scores([], W_ALL) == []


# ---- the twins agree bit for bit ------------------------------------------------------------------

anything = st.floats(allow_nan=True, allow_infinity=True)
plausible = st.one_of(st.floats(-0.5, 1.5), st.floats(0, 1e5), anything)
rows_st = st.lists(st.tuples(*[plausible] * 6), min_size=1, max_size=40)
weights_st = st.tuples(*[st.one_of(st.floats(0, 10), anything)] * 6)


def bits(x: float) -> bytes:
    return struct.pack("<d", x)


@settings(max_examples=400, deadline=None)
@given(rows=rows_st, weights=weights_st)
def test_twins_agree_on_best_and_scores(both_scoring, rows, weights):
    compiled, pure = both_scoring
    assert compiled.best(rows, weights) == pure.best(rows, weights)
    assert [bits(s) for s in compiled.scores(rows, weights)] == [bits(s) for s in pure.scores(rows, weights)]


@settings(max_examples=400, deadline=None)
@given(args=st.tuples(*[plausible] * 6), weights=weights_st)
def test_twins_agree_on_score(both_scoring, args, weights):
    compiled, pure = both_scoring
    assert bits(compiled.score(*args, weights)) == bits(pure.score(*args, weights))


@settings(max_examples=200, deadline=None)
@given(rows=rows_st, weights=weights_st)
def test_best_is_the_first_maximum_of_scores(scoring, rows, weights):
    s = scoring.scores(rows, weights)
    assert all(0.0 <= x <= 1.0 for x in s)
    assert scoring.best(rows, weights) == s.index(max(s))
