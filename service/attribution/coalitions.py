"""Which coalitions of segments get evaluated, and the partial query each one stands for.

A coalition is a frozenset of 0-based segment indices. Owen plans use contiguous windows of
width <= max_width plus the empty and the full coalition, sampled down to a budget M with a
generator seeded from the request seed and the query text, so retries and identical
responses see identical coalitions.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence

import numpy as np

from .errors import AttributionError, TooManyCoalitionsError, UnknownOptionError
from .segment import Span

ESTIMATORS = ("owen", "myerson", "shapley")
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
    """At most `max_coalitions` of `coalitions`: ∅ and N (the largest) always kept, M-2 of the
    rest drawn uniformly without replacement; order ∅, the kept rest in input order, N."""
    _check_budget(max_coalitions)
    if len(coalitions) <= max_coalitions:
        return list(coalitions)
    full = max(coalitions, key=len)
    rest = [c for c in coalitions if c and c != full]
    chosen = rng.choice(len(rest), size=max_coalitions - 2, replace=False)
    return [EMPTY, *(rest[i] for i in sorted(int(i) for i in chosen)), full]


def random_coalitions(
    n: int, max_coalitions: int, rng: np.random.Generator
) -> list[frozenset[int]]:
    """Non-contiguous ablation: ∅, N and M-2 distinct random proper subsets (uniform without
    replacement over all 2^n - 2 of them); order ∅, by size then members, N."""
    _check_budget(max_coalitions)
    if n <= 0:
        return [EMPTY]
    if 2**n <= max_coalitions:
        return all_coalitions(n)
    wanted = max_coalitions - 2
    masks: set[int] = set()
    if n <= 20:
        masks.update(int(m) for m in rng.choice(np.arange(1, 2**n - 1), size=wanted, replace=False))
    else:  # 2^n - 2 >> M: rejection of the rare duplicate / empty / full draw is cheap
        weights = 1 << np.arange(n, dtype=object)
        while len(masks) < wanted:
            bits = rng.integers(0, 2, size=n)
            mask = int(np.dot(bits.astype(object), weights))
            if 0 < mask < 2**n - 1:
                masks.add(mask)
    subsets = [frozenset(i for i in range(n) if mask >> i & 1) for mask in masks]
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

    owen: contiguous windows (width <= max_width) sampled to max_coalitions, or random subsets
    when `contiguous` is False; myerson: every window (TooManyCoalitionsError when
    n(n+1)/2 + 1 > max_coalitions); shapley: all subsets (the caller enforces the n limit).
    """
    if estimator == "owen":
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
