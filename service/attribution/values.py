"""Estimators of each segment's value φ from a coalition value table v (v(∅) = 0).

- owen_values: the paper's truncated estimator, a Shapley-weighted sum of the marginal
  contributions v(S ∪ {i}) - v(S) over the evaluated pairs only (not renormalised).
- myerson_values: exact value of the game restricted to contiguous coalitions on the chain
  (Harsanyi dividends of the windows), efficient: Σφ = v(N).
- shapley_values: exact Shapley over all 2^n subsets; small n and the test oracle.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Mapping

import numpy as np

from .coalitions import ESTIMATORS
from .errors import AttributionError, MissingCoalitionError, UnknownOptionError

ValueTable = Mapping[frozenset[int], float]
_VECTOR_MAX_PLAYERS = 63  # masks fit an uint64
_EXACT_FLOAT_PLAYERS = 52
_DENSE_LOOKUP_PLAYERS = 14


@functools.lru_cache(maxsize=256)
def shapley_weights(n: int) -> np.ndarray:
    """w[s] = s!(n-s-1)!/n! = 1/(n·C(n-1, s)) for s = 0..n-1, and w[n] = 0 (read-only)."""
    weights = np.zeros(n + 1)
    for size in range(n):
        weights[size] = 1.0 / (n * math.comb(n - 1, size))
    weights.flags.writeable = False
    return weights


def _mask(members: frozenset[int], n: int) -> int:
    mask = sum(map((1).__lshift__, members))
    if mask >> n or (members and min(members) < 0):
        raise AttributionError(f"coalition {sorted(members)} has members outside 0..{n - 1}")
    return mask


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


def owen_values(n: int, v: ValueTable) -> np.ndarray:
    """φ_i = Σ_{S: i∉S, S and S∪{i} evaluated} |S|!(n-|S|-1)!/n! · (v(S∪{i}) - v(S)).

    ∅ counts as evaluated with value 0 whether or not `v` holds it."""
    if n <= 0:
        return np.zeros(0)
    weights = shapley_weights(n)
    if n > _VECTOR_MAX_PLAYERS:
        table = {_mask(members, n): float(value) for members, value in v.items()}
        table[0] = 0.0
        return _owen_loop(n, table, weights)
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
    result: np.ndarray = weights[sizes] @ marginal
    return result


def _owen_loop(n: int, table: dict[int, float], weights: np.ndarray) -> np.ndarray:
    phi = np.zeros(n)
    for mask, value in table.items():
        size = mask.bit_count()
        for i in range(n):
            bit = 1 << i
            if not mask & bit and (mask | bit) in table:
                phi[i] += weights[size] * (table[mask | bit] - value)
    return phi


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
    """Dispatch to owen_values / myerson_values / shapley_values by name."""
    if estimator == "owen":
        return owen_values(n, v)
    if estimator == "myerson":
        return myerson_values(n, v)
    if estimator == "shapley":
        return shapley_values(n, v)
    raise UnknownOptionError("estimator", estimator, ESTIMATORS)
