"""Coalition plans: contiguous windows, seeded coverage-first sampling under the budget,
partial queries."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.attribution import (
    ESTIMATORS,
    TooManyCoalitionsError,
    UnknownOptionError,
    all_coalitions,
    coalition_plan,
    coalition_seed,
    contiguous_coalitions,
    measured_segments,
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
    # Coverage-first: with room for every singleton, all six are always kept and the other
    # windows are drawn uniformly (M = 12: the 6 singletons + 4 of the 14 wider windows).
    pool = contiguous_coalitions(6, 6)  # 22 coalitions: ∅, 6 singletons, 14 wider, N
    singles = [c for c in pool if len(c) == 1]
    wider = [c for c in pool[1:-1] if len(c) > 1]
    counts = dict.fromkeys(wider, 0)
    rng = np.random.default_rng(11)
    draws = 2000
    for _ in range(draws):
        sampled = sample_coalitions(pool, 12, rng)
        assert set(singles) <= set(sampled)
        for c in sampled[1:-1]:
            if len(c) > 1:
                counts[c] += 1
    expected = draws * 4 / 14
    assert all(abs(count - expected) < 0.2 * expected for count in counts.values())


def test_sampling_draws_singletons_uniformly_when_they_do_not_all_fit():
    # M = 7 < n + 2 = 8: the 5 free places all go to singletons, drawn uniformly.
    pool = contiguous_coalitions(6, 6)
    counts = {frozenset({i}): 0 for i in range(6)}
    rng = np.random.default_rng(12)
    draws = 2000
    for _ in range(draws):
        sampled = sample_coalitions(pool, 7, rng)
        assert len(sampled) == 7 and all(len(c) == 1 for c in sampled[1:-1])
        for c in sampled[1:-1]:
            counts[c] += 1
    expected = draws * 5 / 6
    assert all(abs(count - expected) < 0.05 * expected for count in counts.values())


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(1, 25),
    width=st.integers(1, 10),
    budget=st.integers(2, 120),
    seed=st.integers(0, 2**32),
    contiguous=st.booleans(),
)
def test_plans_are_coverage_first(n, width, budget, seed, contiguous):
    plan = coalition_plan(
        n, estimator="owen", max_width=width, max_coalitions=budget,
        rng=np.random.default_rng(seed), contiguous=contiguous,
    )  # fmt: skip
    singles = {frozenset({i}) for i in range(n)}
    inner = plan[1:-1]
    if budget >= n + 2:
        assert singles <= set(plan)
    else:  # not even the singletons fit: nothing wider than a singleton is evaluated
        assert len(inner) == budget - 2 and all(len(c) == 1 for c in inner)


def test_every_segment_is_measured_when_the_budget_allows():
    # For every n <= 16 and M >= n + 2, whatever the width, the sampler and the estimator,
    # every segment has at least one evaluated pair (S, S ∪ {i}).
    rng = np.random.default_rng(0)
    checked = 0
    for n in range(1, 17):
        for width in sorted({1, 2, 3, 8, n}):
            pool = len(contiguous_coalitions(n, width))
            budgets = sorted({*range(n + 2, n + 10), pool - 1, pool, pool + 5, 2 * n + 7})
            for budget in (b for b in budgets if b >= n + 2):
                for estimator in ESTIMATORS:
                    for contiguous in (True, False):
                        if estimator == "myerson" and n * (n + 1) // 2 + 1 > budget:
                            continue
                        if estimator == "shapley" and n > 10:
                            continue
                        plan = coalition_plan(
                            n, estimator=estimator, max_width=width, max_coalitions=budget,
                            rng=rng, contiguous=contiguous,
                        )  # fmt: skip
                        table = {c: 1.0 for c in plan}
                        assert measured_segments(n, table).all(), (n, width, budget, estimator)
                        checked += 1
    assert checked > 2000


def test_below_the_coverage_budget_some_segment_is_unmeasured():
    # The bound is tight: with M = n + 1 one singleton is missing and, for n >= 3 with
    # nothing wider drawn, that segment has no evaluated pair.
    for n in range(3, 17):
        plan = coalition_plan(
            n, estimator="owen", max_width=n, max_coalitions=n + 1,
            rng=np.random.default_rng(n),
        )  # fmt: skip
        assert measured_segments(n, {c: 1.0 for c in plan}).sum() == n - 1


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 40), budget=st.integers(2, 100), seed=st.integers(0, 1000))
def test_random_coalitions(n, budget, seed):
    a = random_coalitions(n, budget, np.random.default_rng(seed))
    assert a == random_coalitions(n, budget, np.random.default_rng(seed))
    assert len(a) == min(budget, 2**n) == len(set(a))
    assert a[0] == EMPTY and a[-1] == frozenset(range(n))
    assert all(c <= frozenset(range(n)) for c in a)
    assert a == sorted(a, key=lambda c: (len(c), sorted(c)))
    singles = {frozenset({i}) for i in range(n)}
    if budget >= n + 2:
        assert singles <= set(a)
    else:
        assert set(a[1:-1]) <= singles


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
    for contiguous in (True, False):  # owen-sum plans exactly like owen
        plans = [
            coalition_plan(
                10,
                estimator=estimator,
                max_width=3,
                max_coalitions=20,
                rng=np.random.default_rng(4),
                contiguous=contiguous,
            )  # fmt: skip
            for estimator in ("owen", "owen-sum")
        ]
        assert plans[0] == plans[1]
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
