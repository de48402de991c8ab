"""NDCG of a ranked list of product ids against graded relevance labels."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence


def dcg(gains_in_rank_order: Sequence[float]) -> float:
    """Σ (2^g - 1) / log2(rank + 1), ranks from 1."""
    return math.fsum(
        (math.pow(2.0, gain) - 1.0) / math.log2(rank + 1)
        for rank, gain in enumerate(gains_in_rank_order, start=1)
        if gain
    )


def ndcg_at_k(
    ranked_ids: Sequence[str],
    relevant: Mapping[str, float],
    k: int,
    pool: Collection[str] | None = None,
) -> float:
    """NDCG@k: the ranked list filtered to `pool` (if given) and cut at k; the ideal DCG from
    the relevant gains (restricted to the pool when given) cut at k; 0.0 when the ideal DCG
    is 0. A repeated id counts at its first rank only."""
    if k <= 0:
        return 0.0
    allowed = None if pool is None else set(pool)
    seen: set[str] = set()
    gains: list[float] = []
    for product_id in ranked_ids:
        if product_id in seen or (allowed is not None and product_id not in allowed):
            continue
        seen.add(product_id)
        gains.append(float(relevant.get(product_id, 0.0)))
        if len(gains) == k:
            break
    ideal_gains = sorted(
        (
            float(gain)
            for product_id, gain in relevant.items()
            if gain > 0 and (allowed is None or product_id in allowed)
        ),
        reverse=True,
    )[:k]
    ideal = dcg(ideal_gains)
    if ideal <= 0.0:
        return 0.0
    return dcg(gains) / ideal
