"""Coalition plans: contiguous windows, seeded sampling under the budget, partial queries."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.attribution import (
    TooManyCoalitionsError,
    UnknownOptionError,
    all_coalitions,
    coalition_plan,
    coalition_seed,
    contiguous_coalitions,
    partial_query,
    random_coalitions,
    sample_coalitions,
)

EMPTY = frozenset()


def test_contiguous_windows_in_order():
    assert contiguous_coalitions(3, 2) == [
        EMPTY,
        frozenset({0}),
        frozenset({1}),
        frozenset({2}),
        frozenset({0, 1}),
        frozenset({1, 2}),
        frozenset({0, 1, 2}),
    ]
    # max_width >= n: N is already the widest window and is not repeated.
    assert contiguous_coalitions(2, 5) == [EMPTY, frozenset({0}), frozenset({1}), frozenset({0, 1})]
    assert contiguous_coalitions(0, 8) == [EMPTY]


@given(n=st.integers(1, 30), width=st.integers(1, 12))
def test_contiguous_count_matches_the_formula(n, width):
    coalitions = contiguous_coalitions(n, width)
    expected = 1 + sum(n - k + 1 for k in range(1, min(width, n) + 1)) + (1 if width < n else 0)
    assert len(coalitions) == expected == len(set(coalitions))
    assert coalitions[-1] == frozenset(range(n))
    for c in coalitions[1:-1]:
        assert max(c) - min(c) + 1 == len(c) <= width


def test_all_coalitions():
    subsets = all_coalitions(4)
    assert len(subsets) == 16 == len(set(subsets))
    assert subsets[0] == EMPTY and subsets[-1] == frozenset(range(4))


def test_coalition_seed_is_stable_and_depends_on_both_inputs():
    assert coalition_seed(0, "red shoes") == coalition_seed(0, "red shoes")
    assert coalition_seed(0, "red shoes") != coalition_seed(1, "red shoes")
    assert coalition_seed(0, "red shoes") != coalition_seed(0, "red shoe")
    assert 0 <= coalition_seed(7, "x") < 2**64


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(1, 25),
    width=st.integers(1, 10),
    budget=st.integers(2, 120),
    seed=st.integers(0, 2**32),
)
def test_sampling_stays_within_budget_and_keeps_empty_and_full(n, width, budget, seed):
    pool = contiguous_coalitions(n, width)
    sampled = sample_coalitions(pool, budget, np.random.default_rng(seed))
    assert len(sampled) == min(budget, len(pool))
    assert sampled[0] == EMPTY and sampled[-1] == frozenset(range(n))
    assert len(set(sampled)) == len(sampled) and set(sampled) <= set(pool)
    positions = [pool.index(c) for c in sampled]
    assert positions == sorted(positions)


def test_sampling_is_reproducible_per_seed_and_differs_across_seeds():
    pool = contiguous_coalitions(20, 8)
    assert len(pool) > 96

    def plan(seed, query="waterproof leather hiking boots"):
        return sample_coalitions(pool, 96, np.random.default_rng(coalition_seed(seed, query)))

    assert plan(0) == plan(0)
    assert plan(3) == plan(3)
    assert plan(0) != plan(1)
    assert plan(0) != plan(0, query="waterproof leather hiking boots for women")


def test_sampling_is_uniform_over_the_rest():
    pool = contiguous_coalitions(6, 6)  # 22 coalitions, 20 besides ∅ and N
    counts = dict.fromkeys(pool[1:-1], 0)
    rng = np.random.default_rng(11)
    draws = 2000
    for _ in range(draws):
        for c in sample_coalitions(pool, 7, rng)[1:-1]:
            counts[c] += 1
    expected = draws * 5 / 20
    assert all(abs(count - expected) < 0.2 * expected for count in counts.values())


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 40), budget=st.integers(2, 100), seed=st.integers(0, 1000))
def test_random_coalitions(n, budget, seed):
    a = random_coalitions(n, budget, np.random.default_rng(seed))
    assert a == random_coalitions(n, budget, np.random.default_rng(seed))
    assert len(a) == min(budget, 2**n) == len(set(a))
    assert a[0] == EMPTY and a[-1] == frozenset(range(n))
    assert all(c <= frozenset(range(n)) for c in a)


def test_random_coalitions_reach_non_contiguous_sets():
    sampled = random_coalitions(12, 64, np.random.default_rng(0))
    assert any(max(c) - min(c) + 1 != len(c) for c in sampled if c)


def test_partial_query_keeps_the_text_between_segments():
    text = "waterproof leather boots, for women  size 8"
    spans = [(0, 24), (26, 35), (37, 43)]
    assert partial_query(text, spans, frozenset({0, 1})) == "waterproof leather boots, for women"
    assert partial_query(text, spans, frozenset({0, 1, 2})) == text
    assert partial_query(text, spans, frozenset({0, 2})) == "waterproof leather boots size 8"
    assert partial_query(text, spans, frozenset({1})) == "for women"
    assert partial_query(text, spans, EMPTY) == ""


def test_plans_per_estimator():
    rng = np.random.default_rng(0)
    owen = coalition_plan(10, estimator="owen", max_width=8, max_coalitions=20, rng=rng)
    assert len(owen) == 20 and owen[0] == EMPTY and owen[-1] == frozenset(range(10))
    myerson = coalition_plan(5, estimator="myerson", max_width=2, max_coalitions=16, rng=rng)
    assert len(myerson) == 16 and set(myerson) == set(contiguous_coalitions(5, 5))
    with pytest.raises(TooManyCoalitionsError) as caught:
        coalition_plan(6, estimator="myerson", max_width=8, max_coalitions=21, rng=rng)
    assert (caught.value.needed, caught.value.limit) == (22, 21)
    assert coalition_plan(3, estimator="shapley", max_width=1, max_coalitions=2, rng=rng) == (
        all_coalitions(3)
    )
    ablation = coalition_plan(
        12, estimator="owen", max_width=2, max_coalitions=30, rng=rng, contiguous=False
    )
    assert len(ablation) == 30
    with pytest.raises(UnknownOptionError):
        coalition_plan(3, estimator="lime", max_width=2, max_coalitions=8, rng=rng)
