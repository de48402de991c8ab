"""Value functions ("games") of the engine: what a partial text is worth for a target.

A game evaluates a batch of distinct (target, partial text) items in one go and returns raw
scores, which the engine caches; `values` then maps raw scores to coalition values. Two games:

- RetrievalGame: NDCG@k of the partial query against graded labels (the paper's search
  setting): one micro-batched encode of the distinct texts, one batched search.
- RewardModelGame: a reward model's score of (prompt, partial response) (the paper's
  controlled-generation setting), optionally mapped to [0, 1] with configured bounds; v(∅) is
  the score of the empty response or 0, as the model's `empty_value` says.

The engine keeps everything else (planning, dedupe, the one cache round trip, estimators,
redistribution) game-agnostic.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import anyio
import numpy as np

from service.attribution import ndcg_at_k
from service.cache import cache_key
from service.engine.batcher import EncodeBatcher
from service.engine.scoring import PreparedTarget, RowScorer
from service.engine.timing import StageTimer
from service.rewardmodel.spec import score_to_value

if TYPE_CHECKING:
    from service.retrieval.registry import Retriever
    from service.rewardmodel.base import RewardModel

T = TypeVar("T")

RETRIEVAL = "retrieval"
REWARD_MODEL = "reward_model"
RETRIEVAL_LANE = "retrieval"
"""The lane of the retrieval game: a request uses one retriever (options.retriever)."""


def canonical_digest(value: Any) -> str:
    """sha256 of the canonical JSON of `value` (sorted keys, no spaces): equal labels or pools
    give equal cache keys whatever order the client sent them in."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ScoringTarget:
    """Graded labels and optional candidate pool one partial query is scored against."""

    relevant: Mapping[str, float]
    pool: frozenset[str] | None
    digest: str
    pool_digest: str

    @classmethod
    def build(cls, relevant: Mapping[str, float], pool: Sequence[str] | None) -> ScoringTarget:
        labels = {str(pid): float(gain) for pid, gain in relevant.items()}
        pool_set = None if pool is None else frozenset(pool)
        pool_digest = "" if pool_set is None else canonical_digest(sorted(pool_set))
        return cls(labels, pool_set, canonical_digest(labels), pool_digest)

    @property
    def key(self) -> str:
        """Everything about the target that changes a score (dedupe within a request)."""
        return f"{self.digest}\x00{self.pool_digest}"


@dataclass(frozen=True)
class RewardTarget:
    """The prompt (and optional label) a reward model scores partial responses with."""

    prompt: str
    label: str
    key: str

    @classmethod
    def build(cls, prompt: str, label: str | None) -> RewardTarget:
        label = label or ""
        return cls(prompt, label, canonical_digest({"prompt": prompt, "label": label}))


class GameShape(Protocol):
    """What planning needs to know about a game."""

    @property
    def lane(self) -> str:
        """Identity of the game within a request: items are deduplicated per lane."""
        ...

    @property
    def kind(self) -> str:
        """RETRIEVAL or REWARD_MODEL: picks the default segmenter and the attributed text."""
        ...

    @property
    def evaluates_empty(self) -> bool:
        """Whether v(∅) is evaluated (the empty text is an item) instead of fixed to 0."""
        ...


class Game(GameShape, Protocol):
    """A value function over partial texts."""

    def cache_keys(self, items: Sequence[tuple[Any, str]]) -> list[str]:
        """The score-cache key of each (target, text) item."""
        ...

    async def evaluate(
        self, items: Sequence[tuple[Any, str]], timer: StageTimer
    ) -> tuple[np.ndarray, int]:
        """Raw scores of distinct items (what the cache stores) and the number of model
        evaluations that took (texts encoded, partial responses scored)."""
        ...

    async def evaluate_naive(
        self, items: Sequence[tuple[Any, str]], timer: StageTimer
    ) -> np.ndarray:
        """Raw scores, one model call per item (the cost structure of the authors' code)."""
        ...

    def values(self, raw: np.ndarray) -> np.ndarray:
        """Coalition values of raw scores."""
        ...


@dataclass(frozen=True)
class RetrievalShape:
    """The retrieval game as planning sees it (no retriever needed to plan)."""

    lane: str = RETRIEVAL_LANE
    kind: str = RETRIEVAL
    evaluates_empty: bool = False


class RetrievalGame:
    """NDCG@k of partial queries under one retriever (v(∅) = 0, never evaluated)."""

    lane = RETRIEVAL_LANE
    kind = RETRIEVAL
    evaluates_empty = False

    def __init__(
        self,
        retriever: Retriever,
        k: int,
        *,
        batcher: EncodeBatcher,
        encode_batch_size: int,
        scorer: RowScorer,
    ) -> None:
        self.retriever = retriever
        self.k = k
        self.batcher = batcher
        self.encode_batch_size = encode_batch_size
        self.scorer = scorer

    @property
    def batch_lane(self) -> str:
        """The encode batcher's lane: requests of one encoder share batches."""
        return encode_lane(self.retriever)

    def cache_keys(self, items: Sequence[tuple[Any, str]]) -> list[str]:
        retriever = self.retriever
        encoder = retriever.encoder.name
        version = retriever.index.manifest.version
        return [
            cache_key(
                retriever=retriever.name,
                encoder=encoder,
                index_version=version,
                k=self.k,
                target=target.digest,
                pool=target.pool_digest,
                query=text,
            )
            for target, text in items
        ]

    async def evaluate(
        self, items: Sequence[tuple[Any, str]], timer: StageTimer
    ) -> tuple[np.ndarray, int]:
        text_rows: dict[str, int] = {}
        for _, text in items:
            text_rows.setdefault(text, len(text_rows))
        texts = list(text_rows)
        with timer.stage("encode"):
            vectors = await self.batcher.encode(
                self.batch_lane, encode_function(self.retriever, self.encode_batch_size), texts
            )
        depth = min(self.k, index_size(self.retriever))
        with timer.stage("search"):
            _, rows = await run_sync(self.retriever.index.search, vectors, depth)
        with timer.stage("score"):
            scored = await run_sync(_score_rows, self.scorer, items, text_rows, rows, self.k)
        return np.asarray(scored, dtype=np.float64), len(texts)

    async def evaluate_naive(
        self, items: Sequence[tuple[Any, str]], timer: StageTimer
    ) -> np.ndarray:
        return await run_sync(self._evaluate_naive, items, timer)

    def _evaluate_naive(self, items: Sequence[tuple[Any, str]], timer: StageTimer) -> np.ndarray:
        values = np.zeros(len(items), dtype=np.float64)
        encode = encode_function(self.retriever, self.encode_batch_size)
        depth = min(self.k, index_size(self.retriever))
        for position, (target, text) in enumerate(items):
            with timer.stage("encode"):
                vector = encode([text])
            with timer.stage("search"):
                hits = self.retriever.search_vectors(vector, depth)
            with timer.stage("score"):
                ranked = [product_id for product_id, _ in hits[0]]
                values[position] = ndcg_at_k(ranked, target.relevant, self.k, target.pool)
        return values

    def values(self, raw: np.ndarray) -> np.ndarray:
        return raw


class RewardModelGame:
    """A reward model's score of (prompt, partial response), mapped with its score bounds."""

    kind = REWARD_MODEL

    def __init__(self, model: RewardModel) -> None:
        self.model = model
        self.lane = f"{REWARD_MODEL}:{model.name}"
        self.evaluates_empty = model.spec.empty_value == "score"

    def cache_keys(self, items: Sequence[tuple[Any, str]]) -> list[str]:
        model = self.model
        # k=0 never occurs for retrieval (k >= 1), so the key spaces cannot meet.
        return [
            cache_key(
                retriever=self.lane,
                encoder=f"{model.spec.backend}:{model.identity}",
                index_version=model.version,
                k=0,
                target=target.key,
                pool="",
                query=text,
            )
            for target, text in items
        ]

    async def evaluate(
        self, items: Sequence[tuple[Any, str]], timer: StageTimer
    ) -> tuple[np.ndarray, int]:
        with timer.stage("score"):
            raw = await self.model.score(
                [target.prompt for target, _ in items],
                [text for _, text in items],
                [target.label for target, _ in items],
            )
        return np.asarray(raw, dtype=np.float64), len(items)

    async def evaluate_naive(
        self, items: Sequence[tuple[Any, str]], timer: StageTimer
    ) -> np.ndarray:
        scores = np.zeros(len(items), dtype=np.float64)
        for position, (target, text) in enumerate(items):
            with timer.stage("score"):
                raw = await self.model.score([target.prompt], [text], [target.label])
            scores[position] = float(raw[0])
        return scores

    def values(self, raw: np.ndarray) -> np.ndarray:
        return score_to_value(raw, self.model.spec.score_bounds)


def encode_lane(retriever: Retriever) -> str:
    return f"{retriever.name}\x00{retriever.encoder.name}"


def encode_function(retriever: Retriever, batch_size: int) -> Callable[[list[str]], np.ndarray]:
    encoder = retriever.encoder

    def encode(texts: list[str]) -> np.ndarray:
        return np.asarray(encoder.encode(texts, batch_size=batch_size), dtype=np.float32)

    return encode


def index_size(retriever: Retriever) -> int:
    return max(1, len(retriever.index.ids))


def _score_rows(
    scorer: RowScorer,
    items: Sequence[tuple[Any, str]],
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


async def run_sync(function: Callable[..., T], *args: Any) -> T:
    return await anyio.to_thread.run_sync(function, *args)


__all__ = [
    "REWARD_MODEL",
    "RETRIEVAL",
    "RETRIEVAL_LANE",
    "Game",
    "GameShape",
    "RetrievalGame",
    "RetrievalShape",
    "RewardModelGame",
    "RewardTarget",
    "ScoringTarget",
    "canonical_digest",
    "encode_function",
    "encode_lane",
    "index_size",
]
