"""Estimators: the exact ones against the permutation oracle and the Shapley axioms; owen
against values worked out by hand from its formula."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.attribution import (
    MissingCoalitionError,
    UnknownOptionError,
    all_coalitions,
    contiguous_coalitions,
    estimate,
    myerson_values,
    owen_values,
    runs,
    shapley_values,
    shapley_weights,
)
from service.attribution.values import _owen_loop

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
    ):
        np.testing.assert_allclose(
            estimate(estimator, n, mixed),
            scale * estimate(estimator, n, a) + estimate(estimator, n, b),
            atol=1e-9,
        )


def test_owen_three_segments_by_hand():
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
    np.testing.assert_allclose(owen_values(3, v), expected, atol=1e-12)
    np.testing.assert_allclose(owen_values(3, v), [0.116666667, 0.366666667, 0.233333333])


def test_owen_four_segments_by_hand():
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
    np.testing.assert_allclose(owen_values(4, v), expected, atol=1e-12)
    # With ∅ given explicitly the result is the same (v(∅) = 0 either way).
    np.testing.assert_allclose(owen_values(4, {frozenset(): 0.0, **v}), expected, atol=1e-12)


def test_owen_uses_only_evaluated_pairs():
    # Only {1} and N: player 1 gets its singleton term, nobody else anything (N∖{i} missing).
    v = {frozenset({1}): 0.6, frozenset({0, 1, 2}): 1.0}
    np.testing.assert_allclose(owen_values(3, v), [0.0, 1 / 3 * 0.6, 0.0])


def test_owen_equals_shapley_when_everything_is_evaluated(shapley_oracle):
    rng = np.random.default_rng(3)
    v = {c: (float(rng.normal()) if c else 0.0) for c in all_coalitions(5)}
    np.testing.assert_allclose(owen_values(5, v), shapley_oracle(5, v), atol=1e-12)


def test_owen_pure_python_path_matches_vector_path():
    # Above 63 players masks no longer fit an uint64 and the loop path runs; check it on a
    # small game against the vector path, then that a 70-player game gets the singleton terms.
    rng = np.random.default_rng(0)
    v = {c: float(rng.random()) for c in contiguous_coalitions(8, 3)[1:]}
    table = {sum(1 << i for i in c): value for c, value in v.items()} | {0: 0.0}
    np.testing.assert_allclose(
        _owen_loop(8, table, shapley_weights(8)), owen_values(8, v), atol=1e-12
    )
    singles = {frozenset({i}): float(i) for i in range(70)}
    np.testing.assert_allclose(owen_values(70, singles), np.arange(70) / 70, atol=1e-12)


def test_exact_estimators_refuse_missing_coalitions():
    window = {c: 1.0 for c in contiguous_coalitions(4, 4)[1:]}
    del window[frozenset({1, 2})]
    with pytest.raises(MissingCoalitionError):
        myerson_values(4, window)
    with pytest.raises(MissingCoalitionError):
        shapley_values(4, {frozenset(range(4)): 1.0})
    with pytest.raises(UnknownOptionError):
        estimate("banzhaf", 4, window)


def test_no_players():
    for estimator in ("owen", "myerson", "shapley"):
        assert estimate(estimator, 0, {}).shape == (0,)
