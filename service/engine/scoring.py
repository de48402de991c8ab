"""NDCG@k straight from faiss row indices, equal (bit for bit) to
`service.attribution.ndcg_at_k` on the corresponding product ids, without building a list of
k ids per partial query: with k=1000 and hundreds of distinct partial queries per request,
converting rows to ids and walking them in Python would cost as much as the search."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from service.attribution import dcg


@dataclass(frozen=True)
class PreparedTarget:
    rel_rows: np.ndarray  # sorted index rows of the labelled products
    rel_gains: np.ndarray  # their gains, aligned with rel_rows
    pool_rows: np.ndarray | None  # sorted index rows of the pool, None without a pool
    ideal: float  # ideal DCG@k (labels outside the index still count, as in ndcg_at_k)


class RowScorer:
    """Scores ranked faiss rows of one index against graded labels (and an optional pool)."""

    def __init__(self, ids: Sequence[str]) -> None:
        self._row_of = {product_id: row for row, product_id in enumerate(ids)}

    def prepare(
        self, relevant: Mapping[str, float], pool: frozenset[str] | None, k: int
    ) -> PreparedTarget:
        labelled = sorted(
            (self._row_of[pid], float(gain))
            for pid, gain in relevant.items()
            if gain and pid in self._row_of and (pool is None or pid in pool)
        )
        rel_rows = np.fromiter((row for row, _ in labelled), dtype=np.int64, count=len(labelled))
        rel_gains = np.fromiter((g for _, g in labelled), dtype=np.float64, count=len(labelled))
        pool_rows = None
        if pool is not None:
            pool_rows = np.asarray(
                sorted(self._row_of[p] for p in pool if p in self._row_of), dtype=np.int64
            )
        ideal_gains = sorted(
            (float(g) for pid, g in relevant.items() if g > 0 and (pool is None or pid in pool)),
            reverse=True,
        )[:k]
        return PreparedTarget(rel_rows, rel_gains, pool_rows, dcg(ideal_gains))

    @staticmethod
    def score(target: PreparedTarget, ranked_rows: np.ndarray, k: int) -> float:
        if k <= 0 or target.ideal <= 0.0:
            return 0.0
        ranked = ranked_rows[ranked_rows >= 0]
        if target.pool_rows is not None:
            ranked = ranked[np.isin(ranked, target.pool_rows, assume_unique=True)]
        ranked = ranked[:k]
        if target.rel_rows.size == 0 or ranked.size == 0:
            return 0.0
        slots = np.searchsorted(target.rel_rows, ranked)
        slots = np.minimum(slots, target.rel_rows.size - 1)
        hits = np.nonzero(target.rel_rows[slots] == ranked)[0]
        # dcg() over the ranked gains, with only the non-zero terms materialised: place the
        # hits' gains at their ranks in a zero list as long as the last hit's rank.
        ranked_gains = [0.0] * (int(hits[-1]) + 1) if hits.size else []
        for position, gain in zip(
            hits.tolist(), target.rel_gains[slots[hits]].tolist(), strict=True
        ):
            ranked_gains[position] = gain
        total = dcg(ranked_gains)
        return float(total / target.ideal)


__all__ = ["PreparedTarget", "RowScorer"]
