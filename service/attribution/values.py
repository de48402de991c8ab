"""Estimators of each segment's value φ from a coalition value table v.

The estimators take v(∅) = 0 (an ∅ entry in the table is ignored); `segment_values` is the
entry point for a table whose v(∅) is a real score: it measures every value from v(∅).

- owen_values: the Shapley-weighted *mean* of the evaluated marginal contributions
  v(S ∪ {i}) - v(S): each segment's weighted sum divided by the total Shapley weight of its
  evaluated pairs. Exact on additive games whatever the plan, exact Shapley when every
  subset is evaluated.
- owen_sum_values: the paper's truncated estimator, the same weighted sum not renormalised.
  It favours the end segments: only they can have the heavily weighted pair (N∖{i}, N).
- myerson_values: exact value of the game restricted to contiguous coalitions on the chain
  (Harsanyi dividends of the windows), efficient: Σφ = v(N).
- shapley_values: exact Shapley over all 2^n subsets; small n and the test oracle.

A segment with no evaluated pair (S, S ∪ {i}) is *unmeasured*: both owen estimators report
NaN for it (a property of the plan, not of the segment), never a 0 that would read as
"contributes nothing". The exact estimators measure every segment.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Mapping

import numpy as np

from .errors import AttributionError, MissingCoalitionError, UnknownOptionError

ESTIMATORS = ("owen", "owen-sum", "myerson", "shapley")

ValueTable = Mapping[frozenset[int], float]
_EMPTY: frozenset[int] = frozenset()
_VECTOR_MAX_PLAYERS = 63  # masks fit an uint64
_EXACT_FLOAT_PLAYERS = 52
_DENSE_LOOKUP_PLAYERS = 14
_EXACT_WEIGHT_PLAYERS = 1000  # n·C(n-1, n/2) overflows a float from n ≈ 1030


@functools.lru_cache(maxsize=256)
def shapley_weights(n: int) -> np.ndarray:
    """w[s] = s!(n-s-1)!/n! = 1/(n·C(n-1, s)) for s = 0..n-1, and w[n] = 0 (read-only).

    Weights below the smallest float are 0 (n beyond ~1000 players)."""
    weights = np.zeros(n + 1)
    if n > _EXACT_WEIGHT_PLAYERS:  # the binomials no longer fit a float: from log-gamma
        weights[:n] = np.exp(_log_shapley_weights(n))
    else:
        for size in range(n):
            weights[size] = 1.0 / (n * math.comb(n - 1, size))
    weights.flags.writeable = False
    return weights


def _log_shapley_weights(n: int) -> np.ndarray:
    """log w[s] for s = 0..n-1 (finite for any n, where w itself underflows)."""
    log_factorials = np.array([math.lgamma(k + 1) for k in range(n)])  # log k!, k < n
    # log w[s] = log s! + log (n-s-1)! - log n!
    result: np.ndarray = log_factorials + log_factorials[::-1] - math.lgamma(n + 1)
    return result


def _mask(members: frozenset[int], n: int) -> int:
    if members and not (0 <= min(members) and max(members) < n):
        raise AttributionError(f"coalition {sorted(members)} has members outside 0..{n - 1}")
    return sum(map((1).__lshift__, members))


def _mask_arrays(n: int, v: ValueTable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(masks, values, sizes) of the non-empty coalitions of the table, then ∅ (worth 0)."""
    keys = [members for members in v if members]
    sizes = np.fromiter(map(len, keys), dtype=np.int64, count=len(keys))
    members = np.fromiter(
        itertools.chain.from_iterable(keys), dtype=np.int64, count=int(sizes.sum())
    )
    if (members.astype(np.uint64) >= n).any():  # negatives wrap around to huge values
        raise AttributionError(f"a coalition has members outside 0..{n - 1}")
    rows = np.repeat(np.arange(len(keys)), sizes)
    if n <= _EXACT_FLOAT_PLAYERS:  # sums of distinct powers of two below 2^53 are exact
        masks = np.bincount(rows, weights=np.exp2(members), minlength=len(keys) + 1)
        masks = masks.astype(np.uint64)
    else:
        masks = np.zeros(len(keys) + 1, dtype=np.uint64)
        np.add.at(masks, rows, np.left_shift(np.uint64(1), members.astype(np.uint64)))
    values = np.zeros(len(keys) + 1)
    values[:-1] = [v[members] for members in keys]
    return masks, values, np.append(sizes, 0)


def _owen_vector(n: int, v: ValueTable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(weighted sums, weighted means, measured) for n <= 63 players, vectorised over the
    table: one row per evaluated coalition S, one column per player i."""
    masks, values, sizes = _mask_arrays(n, v)
    bits = np.left_shift(np.uint64(1), np.arange(n, dtype=np.uint64))
    extended = masks[:, None] | bits[None, :]
    if n <= _DENSE_LOOKUP_PLAYERS:  # row of every mask in a dense table; -1 = not evaluated
        lookup = np.full(1 << n, -1, dtype=np.int64)
        lookup[masks] = np.arange(len(masks))
        position = lookup[extended]
        found = (position >= 0) & (extended != masks[:, None])
    else:
        order = np.argsort(masks)
        masks, values, sizes = masks[order], values[order], sizes[order]
        extended = extended[order]
        position = np.minimum(np.searchsorted(masks, extended), len(masks) - 1)
        found = (masks[position] == extended) & (extended != masks[:, None])
    marginal = np.where(found, values[position] - values[:, None], 0.0)
    row_weights = shapley_weights(n)[sizes]
    sums: np.ndarray = row_weights @ marginal
    totals: np.ndarray = row_weights @ found
    # Every weight is >= 1/(63·C(62, 31)) > 0 here: a total is 0 exactly when no pair is found.
    measured: np.ndarray = totals > 0.0
    means: np.ndarray = sums / np.where(measured, totals, 1.0)
    means[~measured] = np.nan
    return sums, means, measured


def _owen_loop(n: int, v: ValueTable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(weighted sums, weighted means, measured) for any n in pure Python (masks as ints).

    Walks every evaluated coalition T and its members i with T∖{i} evaluated: O(Σ|T|).
    The means use log weights relative to each player's largest one, so they stay exact
    where the Shapley weights themselves underflow (n beyond ~1000)."""
    table: dict[int, float] = {0: 0.0}
    entries: list[tuple[frozenset[int], int, float]] = []
    for members, value in v.items():
        if members:
            mask = _mask(members, n)
            table[mask] = float(value)
            entries.append((members, mask, float(value)))
    player_sizes: list[list[int]] = [[] for _ in range(n)]
    player_marginals: list[list[float]] = [[] for _ in range(n)]
    for members, mask, value in entries:
        for i in members:
            smaller = table.get(mask ^ (1 << i))
            if smaller is not None:
                player_sizes[i].append(len(members) - 1)
                player_marginals[i].append(value - smaller)
    weights = shapley_weights(n)
    log_weights = _log_shapley_weights(n)
    sums = np.zeros(n)
    means = np.full(n, np.nan)
    measured = np.zeros(n, dtype=bool)
    for i in range(n):
        if not player_sizes[i]:
            continue
        sizes = np.asarray(player_sizes[i], dtype=np.int64)
        marginals = np.asarray(player_marginals[i])
        sums[i] = float(weights[sizes] @ marginals)
        relative = np.exp(log_weights[sizes] - log_weights[sizes].max())
        means[i] = float(relative @ marginals / relative.sum())
        measured[i] = True
    return sums, means, measured


def _owen(n: int, v: ValueTable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if n > _VECTOR_MAX_PLAYERS:
        return _owen_loop(n, v)
    return _owen_vector(n, v)


def owen_values(n: int, v: ValueTable) -> np.ndarray:
    """The Shapley-weighted mean of each segment's evaluated marginal contributions:

        φ_i = Σ_S w(|S|)·(v(S∪{i}) - v(S)) / Σ_S w(|S|),   w(s) = s!(n-s-1)!/n!,

    both sums over the evaluated pairs (S, S∪{i}), i ∉ S. NaN for a segment with no
    evaluated pair (unmeasured). ∅ counts as evaluated with value 0 whether or not `v`
    holds it. On an additive game every marginal is the player's own weight, so φ_i is that
    weight on any plan; with every subset evaluated the weights sum to 1 and φ is Shapley."""
    if n <= 0:
        return np.zeros(0)
    return _owen(n, v)[1]


def owen_sum_values(n: int, v: ValueTable) -> np.ndarray:
    """The paper's truncated estimator: φ_i = Σ_S w(|S|)·(v(S∪{i}) - v(S)) over the
    evaluated pairs only, not renormalised (NaN for a segment with no evaluated pair)."""
    if n <= 0:
        return np.zeros(0)
    sums, _, measured = _owen(n, v)
    result: np.ndarray = np.where(measured, sums, np.nan)
    return result


def measured_segments(n: int, v: ValueTable) -> np.ndarray:
    """Whether each segment has at least one evaluated pair (S, S∪{i}) in `v` (∅ counts as
    evaluated, so {i} alone measures i). A boolean array of length n."""
    if n <= 0:
        return np.zeros(0, dtype=bool)
    return _owen(n, v)[2]


def myerson_values(n: int, v: ValueTable) -> np.ndarray:
    """Exact value of the chain-restricted game: φ_i = Σ_{windows W ∋ i} d(W)/|W| with
    d([a,b]) = v[a,b] - v[a+1,b] - v[a,b-1] + v[a+1,b-1] (empty windows worth 0).

    Needs every window [a, b]; MissingCoalitionError otherwise."""
    if n <= 0:
        return np.zeros(0)
    window = np.zeros((n + 1, n + 1))  # window[a, b + 1] = v([a, b]); empty windows stay 0
    for a in range(n):
        for b in range(a, n):
            members = frozenset(range(a, b + 1))
            if members not in v:
                raise MissingCoalitionError(members, "myerson")
            window[a, b + 1] = float(v[members])
    dividend = np.zeros((n, n))
    for a in range(n):
        for b in range(a, n):
            inner = window[a + 1, b] if a + 1 <= b else 0.0
            dividend[a, b] = (window[a, b + 1] - window[a + 1, b + 1] - window[a, b] + inner) / (
                b - a + 1
            )
    # φ_i = Σ_{a <= i <= b} dividend[a, b]: cumulate over a upward and b downward.
    cumulated = np.cumsum(np.cumsum(dividend[:, ::-1], axis=1)[:, ::-1], axis=0)
    result: np.ndarray = np.diag(cumulated).copy()
    return result


def shapley_values(n: int, v: ValueTable) -> np.ndarray:
    """Exact Shapley value; needs all 2^n subsets (∅ may be absent: it is worth 0)."""
    if n <= 0:
        return np.zeros(0)
    if n > 24:
        raise AttributionError(f"exact Shapley over {n} players needs 2^{n} coalitions")
    full = 1 << n
    table = np.full(full, np.nan)
    for members, value in v.items():
        table[_mask(members, n)] = float(value)
    table[0] = 0.0
    if np.isnan(table).any():
        missing = int(np.flatnonzero(np.isnan(table))[0])
        raise MissingCoalitionError(frozenset(i for i in range(n) if missing >> i & 1), "shapley")
    masks = np.arange(full)
    sizes = np.zeros(full, dtype=np.int64)
    for i in range(n):
        sizes += (masks >> i) & 1
    weights = shapley_weights(n)
    phi = np.zeros(n)
    for i in range(n):
        without = masks[((masks >> i) & 1) == 0]
        phi[i] = float(np.dot(weights[sizes[without]], table[without | (1 << i)] - table[without]))
    return phi


def estimate(estimator: str, n: int, v: ValueTable) -> np.ndarray:
    """Dispatch to owen_values / owen_sum_values / myerson_values / shapley_values by name
    (the table's v(∅) is taken as 0; see segment_values)."""
    if estimator == "owen":
        return owen_values(n, v)
    if estimator == "owen-sum":
        return owen_sum_values(n, v)
    if estimator == "myerson":
        return myerson_values(n, v)
    if estimator == "shapley":
        return shapley_values(n, v)
    raise UnknownOptionError("estimator", estimator, ESTIMATORS)


def segment_values(estimator: str, n: int, table: ValueTable) -> np.ndarray:
    """Segment values φ of one response from its table of evaluated coalitions.

    `table` may hold ∅ with a real value (a reward model's score of the empty response):
    every value is measured from v(∅), so with myerson/shapley Σφ = v(N) - v(∅). n == 0
    gives an empty array; n == 1 gives [v({0}) - v(∅)] (NaN when {0} was not evaluated),
    whatever the estimator; n >= 2 runs the estimator."""
    if estimator not in ESTIMATORS:
        raise UnknownOptionError("estimator", estimator, ESTIMATORS)
    if n <= 0:
        return np.zeros(0)
    empty = float(table.get(_EMPTY, 0.0))
    shifted = table
    if empty != 0.0:
        shifted = {members: float(value) - empty for members, value in table.items() if members}
    if n == 1:
        only = frozenset({0})
        return np.array([float(shifted[only]) if only in shifted else np.nan])
    return estimate(estimator, n, shifted)
