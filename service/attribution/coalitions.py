"""Which coalitions of segments get evaluated, and the partial query each one stands for.

A coalition is a frozenset of 0-based segment indices. Owen plans use contiguous windows of
width <= max_width plus the empty and the full coalition, sampled down to a budget M with a
generator seeded from the request seed and the query text, so retries and identical
responses see identical coalitions. Sampling is coverage-first (∅, N, every singleton, then
the rest), so with M >= n + 2 every segment has an evaluated pair.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence

import numpy as np

from .errors import AttributionError, TooManyCoalitionsError, UnknownOptionError
from .segment import Span
from .values import ESTIMATORS

EMPTY: frozenset[int] = frozenset()


def _check_width(max_width: int) -> None:
    if max_width < 1:
        raise AttributionError(f"max_width must be >= 1, got {max_width}")


def _check_budget(max_coalitions: int) -> None:
    if max_coalitions < 2:
        raise AttributionError(
            f"max_coalitions must be >= 2 (the empty and full coalition), got {max_coalitions}"
        )


def contiguous_coalitions(n: int, max_width: int) -> list[frozenset[int]]:
    """[∅] + windows of width 1..min(max_width, n) ordered by width then start, + N if
    max_width < n (so the full coalition is always last)."""
    _check_width(max_width)
    coalitions = [EMPTY]
    for width in range(1, min(max_width, n) + 1):
        coalitions.extend(frozenset(range(start, start + width)) for start in range(n - width + 1))
    if 0 < n and max_width < n:
        coalitions.append(frozenset(range(n)))
    return coalitions


def all_coalitions(n: int) -> list[frozenset[int]]:
    """All 2^n subsets, by size then lexicographically (∅ first, N last)."""
    return [frozenset(c) for size in range(n + 1) for c in itertools.combinations(range(n), size)]


def coalition_seed(seed: int, query: str) -> int:
    """64-bit seed from the request seed and the query text (sha256 of f"{seed}\\x00{query}")."""
    digest = hashlib.sha256(f"{seed}\x00{query}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def sample_coalitions(
    coalitions: Sequence[frozenset[int]], max_coalitions: int, rng: np.random.Generator
) -> list[frozenset[int]]:
    """At most `max_coalitions` of `coalitions`, coverage-first: ∅ and N (the largest) always
    kept, then every singleton, then the rest drawn uniformly without replacement (when even
    the singletons do not fit, M-2 of them are drawn); order ∅, the kept rest in input order,
    N. The singletons give every segment the pair (∅, {i}), so whenever M >= n + 2 every
    segment is measured."""
    _check_budget(max_coalitions)
    if len(coalitions) <= max_coalitions:
        return list(coalitions)
    full = max(coalitions, key=len)
    rest = [c for c in coalitions if c and c != full]
    singles = [k for k, c in enumerate(rest) if len(c) == 1]
    others = [k for k, c in enumerate(rest) if len(c) != 1]
    budget = max_coalitions - 2
    if len(singles) >= budget:
        kept = [singles[int(i)] for i in rng.choice(len(singles), size=budget, replace=False)]
    else:
        drawn = rng.choice(len(others), size=budget - len(singles), replace=False)
        kept = singles + [others[int(i)] for i in drawn]
    return [EMPTY, *(rest[k] for k in sorted(kept)), full]


def random_coalitions(
    n: int, max_coalitions: int, rng: np.random.Generator
) -> list[frozenset[int]]:
    """Non-contiguous ablation, coverage-first like `sample_coalitions` so that an ablation
    at equal M compares like with like: ∅, N, every singleton (M-2 of them drawn when they do
    not all fit), then distinct random proper subsets of >= 2 members (uniform without
    replacement); order ∅, by size then members, N. All 2^n subsets when they fit."""
    _check_budget(max_coalitions)
    if n <= 0:
        return [EMPTY]
    if 2**n <= max_coalitions:
        return all_coalitions(n)
    budget = max_coalitions - 2
    if budget <= n:
        subsets = [frozenset({int(i)}) for i in rng.choice(n, size=budget, replace=False)]
    else:
        wanted = budget - n  # < 2^n - 2 - n, the number of proper subsets of >= 2 members
        masks: set[int] = set()
        if n <= 20:
            pool = np.arange(1, 2**n - 1)
            pool = pool[(pool & (pool - 1)) != 0]  # not a power of two: >= 2 members
            masks.update(int(m) for m in rng.choice(pool, size=wanted, replace=False))
        else:  # 2^n >> M: rejection of the rare duplicate / small / full draw is cheap
            weights = 1 << np.arange(n, dtype=object)
            while len(masks) < wanted:
                bits = rng.integers(0, 2, size=n)
                mask = int(np.dot(bits.astype(object), weights))
                if mask & (mask - 1) and mask < 2**n - 1:
                    masks.add(mask)
        subsets = [frozenset({i}) for i in range(n)]
        subsets.extend(frozenset(i for i in range(n) if mask >> i & 1) for mask in masks)
    subsets.sort(key=lambda c: (len(c), sorted(c)))
    return [EMPTY, *subsets, frozenset(range(n))]


def runs(members: frozenset[int]) -> list[tuple[int, int]]:
    """Maximal runs of consecutive indices as inclusive (first, last) pairs, in order."""
    result: list[tuple[int, int]] = []
    for index in sorted(members):
        if result and result[-1][1] == index - 1:
            result[-1] = (result[-1][0], index)
        else:
            result.append((index, index))
    return result


def partial_query(text: str, spans: Sequence[Span], members: frozenset[int]) -> str:
    """The query a coalition stands for: each run of consecutive segments is the original
    text from its first segment's start to its last segment's end; runs joined by one space."""
    return " ".join(text[spans[first][0] : spans[last][1]] for first, last in runs(members))


def coalition_plan(
    n: int,
    *,
    estimator: str,
    max_width: int,
    max_coalitions: int,
    rng: np.random.Generator,
    contiguous: bool = True,
) -> list[frozenset[int]]:
    """The coalitions an estimator needs evaluated for n segments.

    owen, owen-sum: contiguous windows (width <= max_width) sampled coverage-first to
    max_coalitions, or random subsets when `contiguous` is False; myerson: every window
    (TooManyCoalitionsError when n(n+1)/2 + 1 > max_coalitions); shapley: all subsets (the
    caller enforces the n limit).
    """
    if estimator in ("owen", "owen-sum"):
        if not contiguous:
            return random_coalitions(n, max_coalitions, rng)
        return sample_coalitions(contiguous_coalitions(n, max_width), max_coalitions, rng)
    if estimator == "myerson":
        needed = n * (n + 1) // 2 + 1
        if needed > max_coalitions:
            raise TooManyCoalitionsError(needed, max_coalitions)
        return contiguous_coalitions(n, max(n, 1))
    if estimator == "shapley":
        return all_coalitions(n)
    raise UnknownOptionError("estimator", estimator, ESTIMATORS)
