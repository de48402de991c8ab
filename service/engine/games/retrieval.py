"""The retrieval game: NDCG@k of partial queries under one retriever (the paper's search
setting). One micro-batched encode of the distinct texts, one batched search, then NDCG
straight from faiss rows (RowScorer). v(∅) = 0, never evaluated."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from service.attribution import dcg
from service.cache import cache_key
from service.engine.batcher import EncodeBatcher
from service.engine.games.base import RETRIEVAL
from service.engine.targets import ScoringTarget
from service.engine.threads import run_sync
from service.engine.timing import StageTimer

if TYPE_CHECKING:
    from service.retrieval.registry import Retriever

RETRIEVAL_LANE = "retrieval"
"""The lane of the retrieval game: a request uses one retriever (options.retriever)."""


@dataclass(frozen=True)
class PreparedTarget:
    rel_rows: np.ndarray  # sorted index rows of the labelled products
    rel_gains: np.ndarray  # their gains, aligned with rel_rows
    pool_rows: np.ndarray | None  # sorted index rows of the pool, None without a pool
    ideal: float  # ideal DCG@k (labels outside the index still count, as in ndcg_at_k)


class RowScorer:
    """NDCG@k straight from faiss row indices, equal (bit for bit) to
    `service.attribution.ndcg_at_k` on the corresponding product ids, without building a list
    of k ids per partial query: with k=1000 and hundreds of distinct partial queries per
    request, converting rows to ids and walking them in Python would cost as much as the
    search."""

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


class RetrievalGame:
    """NDCG@k of partial queries under one retriever (v(∅) = 0, never evaluated): the index
    returns the top `depth` products, the ranking is filtered to the target's pool (if any),
    then cut at k (as the authors do: search 1000, filter to the pool of 100, then cut)."""

    lane = RETRIEVAL_LANE
    kind = RETRIEVAL
    evaluates_empty = False

    def __init__(
        self,
        retriever: Retriever,
        k: int,
        depth: int,
        *,
        batcher: EncodeBatcher,
        encode_batch_size: int,
        scorer: RowScorer,
    ) -> None:
        self.retriever = retriever
        self.k = k
        self.depth = min(depth, index_size(retriever))
        self.batcher = batcher
        self.encode_batch_size = encode_batch_size
        self.scorer = scorer

    def cache_keys(self, items: Sequence[tuple[ScoringTarget, str]]) -> list[str]:
        retriever = self.retriever
        encoder = retriever.encoder.name
        version = retriever.index.manifest.version
        return [
            cache_key(
                retriever=retriever.name,
                encoder=encoder,
                index_version=version,
                k=self.k,
                depth=self.depth,
                target=target.digest,
                pool=target.pool_digest,
                query=text,
            )
            for target, text in items
        ]

    async def evaluate(
        self, items: Sequence[tuple[ScoringTarget, str]], timer: StageTimer
    ) -> tuple[np.ndarray, int]:
        text_rows: dict[str, int] = {}
        for _, text in items:
            text_rows.setdefault(text, len(text_rows))
        texts = list(text_rows)
        if self.retriever.lexical:
            # BM25 has no vectors: its index searches the texts themselves.
            with timer.stage("search"):
                _, rows = await run_sync(self.retriever.index.search_texts, texts, self.depth)  # type: ignore[union-attr]
        else:
            with timer.stage("encode"):
                vectors = await encode_texts(
                    self.retriever, self.batcher, self.encode_batch_size, texts
                )
            with timer.stage("search"):
                _, rows = await run_sync(self.retriever.index.search, vectors, self.depth)
        with timer.stage("score"):
            scored = await run_sync(_score_rows, self.scorer, items, text_rows, rows, self.k)
        return np.asarray(scored, dtype=np.float64), len(texts)

    def values(self, raw: np.ndarray) -> np.ndarray:
        return raw


async def encode_texts(
    retriever: Retriever, batcher: EncodeBatcher, batch_size: int, texts: list[str]
) -> np.ndarray:
    """Unit vectors of `texts`, encoded in the micro-batches concurrent requests share (one
    batcher lane per retriever and encoder)."""
    return await batcher.encode(
        f"{retriever.name}\x00{retriever.encoder.name}",
        _encode_function(retriever, batch_size),
        texts,
    )


def _encode_function(retriever: Retriever, batch_size: int) -> Callable[[list[str]], np.ndarray]:
    encoder = retriever.encoder

    def encode(texts: list[str]) -> np.ndarray:
        return np.asarray(encoder.encode(texts, batch_size=batch_size), dtype=np.float32)

    return encode


def index_size(retriever: Retriever) -> int:
    return max(1, len(retriever.index.ids))


def _score_rows(
    scorer: RowScorer,
    items: Sequence[tuple[ScoringTarget, str]],
    text_rows: Mapping[str, int],
    rows: np.ndarray,
    k: int,
) -> list[float]:
    prepared: dict[tuple[str, str], PreparedTarget] = {}
    scores: list[float] = []
    for target, text in items:
        key = (target.digest, target.pool_digest)
        ready = prepared.get(key)
        if ready is None:
            ready = prepared[key] = scorer.prepare(target.relevant, target.pool, k)
        scores.append(scorer.score(ready, rows[text_rows[text]], k))
    return scores


__all__ = [
    "RETRIEVAL_LANE",
    "PreparedTarget",
    "RetrievalGame",
    "RowScorer",
    "encode_texts",
    "index_size",
]
