"""Estimators: the exact ones against the permutation oracle and the Shapley axioms; owen
(the weighted mean) and owen-sum (the paper's truncated sum) against brute-force references,
additive games and values worked out by hand from their formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.attribution import (
    ESTIMATORS,
    AttributionError,
    MissingCoalitionError,
    UnknownOptionError,
    all_coalitions,
    coalition_plan,
    contiguous_coalitions,
    estimate,
    measured_segments,
    myerson_values,
    owen_sum_values,
    owen_values,
    runs,
    sample_coalitions,
    segment_values,
    shapley_values,
    shapley_weights,
)
from service.attribution.values import _owen_loop, _owen_vector

values_strategy = st.floats(min_value=-1.0, max_value=1.0, allow_nan=False, width=32)


@st.composite
def games(draw, min_n=1, max_n=6):
    """A random game over all subsets of n players (v(∅) = 0)."""
    n = draw(st.integers(min_n, max_n))
    table = {c: (draw(values_strategy) if c else 0.0) for c in all_coalitions(n)}
    return n, table


@st.composite
def chain_games(draw, min_n=1, max_n=6):
    """Random values on every window, extended to all subsets as the sum over runs."""
    n = draw(st.integers(min_n, max_n))
    window = {
        frozenset(range(a, b + 1)): draw(values_strategy) for a in range(n) for b in range(a, n)
    }
    table = {
        c: sum(window[frozenset(range(a, b + 1))] for a, b in runs(c)) for c in all_coalitions(n)
    }
    return n, window, table


@settings(max_examples=60, deadline=None)
@given(game=games())
def test_shapley_matches_permutation_oracle(game, shapley_oracle):
    n, v = game
    np.testing.assert_allclose(shapley_values(n, v), shapley_oracle(n, v), atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(game=games())
def test_shapley_efficiency(game):
    n, v = game
    assert shapley_values(n, v).sum() == pytest.approx(v[frozenset(range(n))], abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(game=chain_games())
def test_myerson_efficiency(game):
    n, window, _ = game
    assert myerson_values(n, window).sum() == pytest.approx(window[frozenset(range(n))], abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(game=chain_games())
def test_myerson_equals_shapley_when_runs_add_up(game, shapley_oracle):
    n, window, table = game
    phi = myerson_values(n, window)
    np.testing.assert_allclose(phi, shapley_values(n, table), atol=1e-9)
    np.testing.assert_allclose(phi, shapley_oracle(n, table), atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(game=games(min_n=2), data=st.data())
def test_shapley_symmetry_under_relabelling(game, data):
    n, v = game
    perm = data.draw(st.permutations(range(n)))
    relabelled = {frozenset(perm[i] for i in c): value for c, value in v.items()}
    phi, phi_relabelled = shapley_values(n, v), shapley_values(n, relabelled)
    for i in range(n):
        assert phi_relabelled[perm[i]] == pytest.approx(phi[i], abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(game=games(min_n=2, max_n=5), data=st.data())
def test_symmetric_players_get_equal_shares(game, data):
    n, v = game
    i, j = data.draw(st.lists(st.integers(0, n - 1), min_size=2, max_size=2, unique=True))
    swap = {i: j, j: i}
    symmetric = {}  # v'(S) = (v(S) + v(swap S)) / 2 makes i and j interchangeable
    for c, value in v.items():
        symmetric[c] = (value + v[frozenset(swap.get(k, k) for k in c)]) / 2
    phi = shapley_values(n, symmetric)
    assert phi[i] == pytest.approx(phi[j], abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(game=chain_games(min_n=2, max_n=7))
def test_myerson_mirror_symmetry(game):
    n, window, _ = game
    mirrored = {frozenset(n - 1 - i for i in c): value for c, value in window.items()}
    np.testing.assert_allclose(
        myerson_values(n, mirrored), myerson_values(n, window)[::-1], atol=1e-9
    )


@settings(max_examples=40, deadline=None)
@given(game=games(min_n=2, max_n=6), data=st.data())
def test_null_player_gets_zero(game, data):
    n, v = game
    null = data.draw(st.integers(0, n - 1))
    # v'(S) = v(S minus the null player): adding it never changes the worth.
    nulled = {c: v[c - {null}] for c in v}
    assert shapley_values(n, nulled)[null] == pytest.approx(0.0, abs=1e-12)
    contiguous = {c: nulled[c] for c in contiguous_coalitions(n, 2)}
    assert owen_values(n, contiguous)[null] == pytest.approx(0.0, abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    game_a=chain_games(min_n=1, max_n=6),
    game_b=chain_games(min_n=6, max_n=6),
    scale=st.floats(-3, 3),
)
def test_linearity(game_a, game_b, scale):
    n, window_a, table_a = game_a
    window_b = {c: value for c, value in game_b[1].items() if max(c) < n}
    table_b = {c: value for c, value in game_b[2].items() if not c or max(c) < n}
    mixed_table = {c: scale * table_a[c] + table_b[c] for c in table_a}
    mixed_window = {c: scale * window_a[c] + window_b[c] for c in window_a}
    for estimator, a, b, mixed in (
        ("shapley", table_a, table_b, mixed_table),
        ("myerson", window_a, window_b, mixed_window),
        ("owen", window_a, window_b, mixed_window),
        ("owen-sum", window_a, window_b, mixed_window),
    ):
        np.testing.assert_allclose(
            estimate(estimator, n, mixed),
            scale * estimate(estimator, n, a) + estimate(estimator, n, b),
            atol=1e-9,
        )


def test_owen_sum_three_segments_by_hand():
    # Evaluated: ∅, {0}, {1}, {2}, {0,1}, {1,2}, N (max_width 2). n = 3: weights by |S|:
    # 0!2!/3! = 1/3, 1!1!/3! = 1/6, 2!0!/3! = 1/3. {0,2} was never evaluated.
    v = {
        frozenset({0}): 0.2,
        frozenset({1}): 0.5,
        frozenset({2}): 0.1,
        frozenset({0, 1}): 0.6,
        frozenset({1, 2}): 0.9,
        frozenset({0, 1, 2}): 1.0,
    }
    expected = [
        1 / 3 * (0.2 - 0) + 1 / 6 * (0.6 - 0.5) + 1 / 3 * (1.0 - 0.9),
        1 / 3 * (0.5 - 0) + 1 / 6 * (0.6 - 0.2) + 1 / 6 * (0.9 - 0.1),
        1 / 3 * (0.1 - 0) + 1 / 6 * (0.9 - 0.5) + 1 / 3 * (1.0 - 0.6),
    ]
    assert list(contiguous_coalitions(3, 2)) == [frozenset(), *v]
    np.testing.assert_allclose(owen_sum_values(3, v), expected, atol=1e-12)
    np.testing.assert_allclose(owen_sum_values(3, v), [0.116666667, 0.366666667, 0.233333333])


def test_owen_sum_four_segments_by_hand():
    # max_width 3: windows of width 1-3 and N. n = 4: weights 1/4, 1/12, 1/12, 1/4 by |S|.
    v = {
        frozenset({0}): 0.1,
        frozenset({1}): 0.4,
        frozenset({2}): 0.3,
        frozenset({3}): 0.0,
        frozenset({0, 1}): 0.5,
        frozenset({1, 2}): 0.8,
        frozenset({2, 3}): 0.2,
        frozenset({0, 1, 2}): 0.7,
        frozenset({1, 2, 3}): 0.85,
        frozenset({0, 1, 2, 3}): 0.9,
    }
    expected = [
        1 / 4 * 0.1 + 1 / 12 * (0.5 - 0.4) + 1 / 12 * (0.7 - 0.8) + 1 / 4 * (0.9 - 0.85),
        1 / 4 * 0.4 + 1 / 12 * (0.5 - 0.1) + 1 / 12 * (0.8 - 0.3) + 1 / 12 * (0.85 - 0.2),
        1 / 4 * 0.3 + 1 / 12 * (0.8 - 0.4) + 1 / 12 * (0.2 - 0.0) + 1 / 12 * (0.7 - 0.5),
        1 / 4 * 0.0 + 1 / 12 * (0.2 - 0.3) + 1 / 12 * (0.85 - 0.8) + 1 / 4 * (0.9 - 0.7),
    ]
    assert set(contiguous_coalitions(4, 3)) == {frozenset(), *v}
    np.testing.assert_allclose(owen_sum_values(4, v), expected, atol=1e-12)
    # With ∅ given explicitly the result is the same (v(∅) = 0 either way).
    np.testing.assert_allclose(owen_sum_values(4, {frozenset(): 0.0, **v}), expected, atol=1e-12)


def test_owen_uses_only_evaluated_pairs():
    # Only {1} and N: player 1 gets its singleton term; nobody else has an evaluated pair
    # (N∖{i} missing), so both owen variants report them unmeasured (NaN), not 0.
    v = {frozenset({1}): 0.6, frozenset({0, 1, 2}): 1.0}
    np.testing.assert_allclose(owen_sum_values(3, v), [np.nan, 1 / 3 * 0.6, np.nan])
    np.testing.assert_allclose(owen_values(3, v), [np.nan, 0.6, np.nan])
    assert measured_segments(3, v).tolist() == [False, True, False]


def test_owen_equals_shapley_when_everything_is_evaluated(shapley_oracle):
    rng = np.random.default_rng(3)
    v = {c: (float(rng.normal()) if c else 0.0) for c in all_coalitions(5)}
    np.testing.assert_allclose(owen_values(5, v), shapley_oracle(5, v), atol=1e-12)
    np.testing.assert_allclose(owen_sum_values(5, v), shapley_oracle(5, v), atol=1e-12)


def test_pure_python_path_matches_vector_path():
    # Above 63 players masks no longer fit an uint64 and the loop path runs; check it on
    # small games against the vector path (sums, means, measured), then on 70 players.
    rng = np.random.default_rng(0)
    for n, plan in (
        (8, contiguous_coalitions(8, 3)[1:]),
        (8, sample_coalitions(contiguous_coalitions(8, 8), 12, rng)[1:]),
        (6, [frozenset({1}), frozenset({1, 2}), frozenset({0, 2, 4}), frozenset({0, 4})]),
        (16, coalition_plan(16, estimator="owen", max_width=4, max_coalitions=30, rng=rng)),
    ):
        v = {c: float(rng.normal()) for c in plan if c}
        for loop, vector in zip(_owen_loop(n, v), _owen_vector(n, v), strict=True):
            np.testing.assert_allclose(loop, vector, atol=1e-12)
    singles = {frozenset({i}): float(i) for i in range(70)}
    np.testing.assert_allclose(owen_sum_values(70, singles), np.arange(70) / 70, atol=1e-12)
    np.testing.assert_allclose(owen_values(70, singles), np.arange(70), atol=1e-12)


def truncated_sum_reference(n, v):
    """The authors' estimator written straight from its formula: a loop over every coalition
    S of the table (∅ included, worth 0) and every player i outside it."""
    table = {frozenset(): 0.0, **{c: value for c, value in v.items() if c}}
    phi = np.zeros(n)
    paired = np.zeros(n, dtype=bool)
    for members, value in table.items():
        for i in range(n):
            grown = members | {i}
            if i not in members and grown in table:
                size = len(members)
                weight = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
                phi[i] += weight * (table[grown] - value)
                paired[i] = True
    return np.where(paired, phi, np.nan)


def weighted_mean_reference(n, v):
    """owen as the issue states it: each player's weighted sum over the evaluated pairs
    divided by the total Shapley weight of those pairs."""
    table = {frozenset(): 0.0, **{c: value for c, value in v.items() if c}}
    total, weight_sum = np.zeros(n), np.zeros(n)
    for members, value in table.items():
        for i in range(n):
            grown = members | {i}
            if i not in members and grown in table:
                size = len(members)
                weight = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
                total[i] += weight * (table[grown] - value)
                weight_sum[i] += weight
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(weight_sum > 0, total / weight_sum, np.nan)


@st.composite
def planned_games(draw, min_n=2, max_n=10, additive=False):
    """(n, table, weights, kind): a plan (every window, a sampled contiguous plan or a sampled
    non-contiguous one with M >= n + 2, or an arbitrary set of coalitions) and its values;
    additive games are worth the sum of their members' weights."""
    n = draw(st.integers(min_n, max_n))
    weights = np.array(draw(st.lists(values_strategy, min_size=n, max_size=n)), dtype=float)
    kind = draw(st.sampled_from(["windows", "contiguous", "random", "arbitrary"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32)))
    if kind == "windows":
        plan = contiguous_coalitions(n, draw(st.integers(1, n)))
    elif kind == "arbitrary":
        subsets = all_coalitions(n)
        plan = draw(st.lists(st.sampled_from(subsets), max_size=3 * n, unique=True))
    else:
        width = draw(st.integers(1, n))
        pool = len(contiguous_coalitions(n, width)) if kind == "contiguous" else 2**n
        budget = draw(st.integers(n + 2, max(n + 2, min(pool, 4 * n))))
        plan = coalition_plan(
            n, estimator="owen", max_width=width, max_coalitions=budget, rng=rng,
            contiguous=kind == "contiguous",
        )  # fmt: skip
    if additive:
        table = {c: float(sum(weights[i] for i in c)) for c in plan}
    else:
        table = {c: (draw(values_strategy) if c else 0.0) for c in plan}
    return n, table, weights, kind


@settings(max_examples=150, deadline=None)
@given(game=planned_games(additive=True))
def test_owen_is_exact_on_additive_games(game):
    # Every marginal contribution of player i is its own weight, so the weighted mean is that
    # weight on any plan that measures i; the sampled plans (M >= n + 2) measure everyone.
    n, table, weights, kind = game
    phi = owen_values(n, table)
    measured = measured_segments(n, table)
    np.testing.assert_allclose(phi[measured], weights[measured], rtol=0, atol=1e-9)
    assert np.isnan(phi[~measured]).all()
    if kind != "arbitrary":
        assert measured.all()


@settings(max_examples=150, deadline=None)
@given(game=planned_games())
def test_owen_estimators_match_brute_force_references(game):
    n, table, _, _ = game
    np.testing.assert_allclose(owen_sum_values(n, table), truncated_sum_reference(n, table),
                               rtol=0, atol=1e-12)  # fmt: skip
    np.testing.assert_allclose(owen_values(n, table), weighted_mean_reference(n, table),
                               rtol=0, atol=1e-9)  # fmt: skip
    assert (measured_segments(n, table) == ~np.isnan(truncated_sum_reference(n, table))).all()


def test_additive_five_equal_players_every_window():
    # Every window evaluated, each player worth 1: the truncated sum favours the ends (only
    # they get the heavily weighted pair (N∖{i}, N)); the weighted mean gives each its 1.
    v = {c: float(len(c)) for c in contiguous_coalitions(5, 5)}
    np.testing.assert_allclose(
        owen_sum_values(5, v), [8 / 15, 23 / 60, 11 / 30, 23 / 60, 8 / 15], atol=1e-12
    )
    np.testing.assert_allclose(owen_sum_values(5, v), [0.533, 0.383, 0.367, 0.383, 0.533],
                               atol=5e-4)  # fmt: skip
    np.testing.assert_allclose(owen_values(5, v), np.ones(5), atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(game=games(min_n=1, max_n=6))
def test_all_subsets_plans_owen_equals_owen_sum_equals_shapley(game, shapley_oracle):
    n, v = game
    exact = shapley_oracle(n, v)
    for estimator in ("owen", "owen-sum", "shapley"):
        np.testing.assert_allclose(estimate(estimator, n, v), exact, atol=1e-9)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13, 40, 63])
def test_shapley_weights_of_each_player_sum_to_one(n):
    # Why owen-sum is Shapley on all-subsets plans: player i has C(n-1, s) coalitions of size
    # s without it, each weighted s!(n-s-1)!/n!, and those weights add up to exactly 1.
    weights = shapley_weights(n)
    total = sum(math.comb(n - 1, size) * weights[size] for size in range(n))
    assert total == pytest.approx(1.0, abs=1e-12)
    assert weights[n] == 0.0


def test_owen_on_a_sampled_plan_by_hand():
    # M = 8 of the 11 windows of width <= 3 for 4 segments (coverage-first: ∅, N, the four
    # singletons, then two drawn windows). Weights for n = 4 by |S|: 1/4, 1/12, 1/12, 1/4.
    plan = sample_coalitions(contiguous_coalitions(4, 3), 8, np.random.default_rng(2))
    sets = [frozenset(), *map(frozenset, ([0], [1], [2], [3], [1, 2], [0, 1, 2], [0, 1, 2, 3]))]
    assert plan == sets
    v = dict(zip(plan[1:], [0.1, 0.4, 0.3, 0.0, 0.8, 0.7, 0.9], strict=True))
    expected = [
        # 0: (∅, {0}) and ({1,2}, {0,1,2})
        (1 / 4 * 0.1 + 1 / 12 * (0.7 - 0.8)) / (1 / 4 + 1 / 12),
        # 1: (∅, {1}) and ({2}, {1,2})
        (1 / 4 * 0.4 + 1 / 12 * (0.8 - 0.3)) / (1 / 4 + 1 / 12),
        # 2: (∅, {2}) and ({1}, {1,2})
        (1 / 4 * 0.3 + 1 / 12 * (0.8 - 0.4)) / (1 / 4 + 1 / 12),
        # 3: (∅, {3}) and ({0,1,2}, N)
        (1 / 4 * 0.0 + 1 / 4 * (0.9 - 0.7)) / (1 / 4 + 1 / 4),
    ]
    np.testing.assert_allclose(owen_values(4, v), expected, atol=1e-12)
    np.testing.assert_allclose(owen_values(4, v), [0.05, 0.425, 0.325, 0.1], atol=1e-12)
    np.testing.assert_allclose(
        owen_sum_values(4, v), [1 / 60, 17 / 120, 13 / 120, 0.05], atol=1e-12
    )


def test_many_players_do_not_overflow_the_weights():
    # 1,200 players (a long text split into words): the Shapley weights of mid sizes
    # underflow to 0, yet the weighted mean stays exact on an additive game.
    n = 1200
    weights = np.linspace(-1, 1, n)
    assert shapley_weights(n)[n // 2] == 0.0
    assert shapley_weights(n)[0] == pytest.approx(1 / n, rel=1e-9)
    plan = [frozenset({i}) for i in range(n) if i != 600]
    plan += [frozenset(range(n)), frozenset(range(1, n)), frozenset(range(600))]
    plan += [frozenset(range(601))]  # player 600's only pair, of weight 600!599!/1200! ≈ 0
    table = {c: float(weights[sorted(c)].sum()) for c in plan}
    phi = owen_values(n, table)
    np.testing.assert_allclose(phi, weights, atol=1e-9)
    assert measured_segments(n, table).all()
    assert owen_sum_values(n, table)[600] == 0.0  # the truncated sum loses it entirely


def test_segment_values_measures_from_the_empty_coalition():
    rng = np.random.default_rng(5)
    n = 4
    base = {c: float(rng.random()) for c in all_coalitions(n)}
    base[frozenset()] = 0.0
    shifted = {c: value + 0.3 for c, value in base.items()}  # v(∅) = 0.3, a real score
    full = frozenset(range(n))
    for estimator in ESTIMATORS:
        np.testing.assert_allclose(
            segment_values(estimator, n, shifted), estimate(estimator, n, base), atol=1e-12
        )
    for estimator in ("myerson", "shapley"):
        total = segment_values(estimator, n, shifted).sum()
        assert total == pytest.approx(shifted[full] - shifted[frozenset()], abs=1e-12)
    # The plain estimators take v(∅) = 0 and ignore an ∅ entry: the shift is segment_values'.
    assert not np.allclose(estimate("owen-sum", n, shifted), estimate("owen-sum", n, base))


def test_segment_values_small_cases():
    for estimator in ESTIMATORS:
        assert segment_values(estimator, 0, {frozenset(): 0.4}).shape == (0,)
        one = segment_values(estimator, 1, {frozenset(): 0.25, frozenset({0}): 0.75})
        np.testing.assert_allclose(one, [0.5])
        np.testing.assert_allclose(segment_values(estimator, 1, {frozenset({0}): 0.75}), [0.75])
        assert np.isnan(segment_values(estimator, 1, {frozenset(): 0.25})).all()
    table = {frozenset({0}): 0.2, frozenset({1}): 0.5, frozenset({0, 1}): 0.9}
    np.testing.assert_allclose(segment_values("shapley", 2, table), [0.3, 0.6], atol=1e-12)
    with pytest.raises(UnknownOptionError):
        segment_values("banzhaf", 1, table)


def test_exact_estimators_refuse_missing_coalitions():
    window = {c: 1.0 for c in contiguous_coalitions(4, 4)[1:]}
    del window[frozenset({1, 2})]
    with pytest.raises(MissingCoalitionError):
        myerson_values(4, window)
    with pytest.raises(MissingCoalitionError):
        shapley_values(4, {frozenset(range(4)): 1.0})
    with pytest.raises(UnknownOptionError):
        estimate("banzhaf", 4, window)


@pytest.mark.parametrize("n", [5, 70])  # the vector path and the pure-Python path
def test_members_outside_the_players_are_refused(n):
    for bad in ({frozenset({-1}): 1.0}, {frozenset({n}): 1.0}):
        for estimator in ("owen", "owen-sum"):
            with pytest.raises(AttributionError):
                estimate(estimator, n, bad)
        with pytest.raises(AttributionError):
            measured_segments(n, bad)


def test_no_players():
    for estimator in ESTIMATORS:
        assert estimate(estimator, 0, {}).shape == (0,)
    assert measured_segments(0, {}).shape == (0,)
    assert ESTIMATORS == ("owen", "owen-sum", "myerson", "shapley")
