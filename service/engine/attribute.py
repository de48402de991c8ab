"""AttributionEngine: the request path of POST /attribute and POST /reward.

For one request: extract and segment every response, plan its coalitions, build the partial
queries, deduplicate them across the whole request, look them all up in the score cache in
one round trip, encode only the misses in one (micro-batched) call, run one batched search,
score with NDCG, write the new scores back in one pipeline, then run the estimators and the
redistribution. Every CPU stage runs on a worker thread, never on the event loop.

`naive` mode reproduces the cost structure of the authors' released code (one encode and one
search per coalition, no dedupe, no cache); it exists only to be measured against.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import numpy as np

from service.attribution import (
    TooManyCoalitionsError,
    clip_advantages,
    coalition_plan,
    coalition_seed,
    estimate,
    extract_query,
    group_advantages,
    ndcg_at_k,
    partial_query,
    redistribute_uniform,
    segment,
    segment_credit,
    token_advantages,
)
from service.cache import ScoreCache, cache_key
from service.engine.batcher import EncodeBatcher
from service.engine.limits import Limits, validate_request
from service.engine.scoring import PreparedTarget, RowScorer
from service.engine.timing import StageTimer
from service.errors import TooManyCoalitions, UnknownQuery, UnknownRetriever
from service.schemas import (
    AttributeRequest,
    AttributeResponse,
    CoalitionOut,
    GroupOut,
    ModelInfo,
    ResponseOut,
    SegmentOut,
    Stats,
    Timings,
)

if TYPE_CHECKING:
    from service.retrieval.registry import Retriever, RetrieverRegistry

logger = logging.getLogger(__name__)

Span = tuple[int, int]
T = TypeVar("T")


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


@dataclass
class _ResponsePlan:
    text: str
    query_span: Span
    spans: list[Span]  # absolute offsets into `text`
    coalitions: list[frozenset[int]]
    queries: list[str]  # partial query per coalition ("" for the empty one)
    entries: list[int]  # unique-entry index per coalition (-1: not evaluated)
    reward: float | None
    token_offsets: list[Span] | None


@dataclass
class _GroupPlan:
    id: str | None
    target: ScoringTarget
    responses: list[_ResponsePlan] = field(default_factory=list)


@dataclass
class EvaluationStats:
    unique: int = 0
    cache_hits: int = 0
    encoded: int = 0
    evaluated: int = 0


class _Entries:
    """Distinct (target, pool, partial query) triples of one request, in first-seen order."""

    def __init__(self, dedupe: bool = True) -> None:
        self.dedupe = dedupe
        self.items: list[tuple[ScoringTarget, str]] = []
        self._index: dict[tuple[str, str, str], int] = {}

    def add(self, target: ScoringTarget, text: str) -> int:
        key = (target.digest, target.pool_digest, text)
        if self.dedupe:
            found = self._index.get(key)
            if found is not None:
                return found
        self._index[key] = len(self.items)
        self.items.append((target, text))
        return len(self.items) - 1


class AttributionEngine:
    """Turns AttributeRequests into AttributeResponses against a RetrieverRegistry and a
    ScoreCache. Create it inside the event loop that serves the requests (the batcher's
    worker tasks live there)."""

    def __init__(
        self,
        registry: RetrieverRegistry,
        cache: ScoreCache | None,
        *,
        limits: Limits | None = None,
        batcher: EncodeBatcher | None = None,
        encode_batch_size: int = 256,
        naive: bool = False,
    ) -> None:
        self.registry = registry
        self.cache = cache
        self.limits = limits or Limits()
        self.batcher = batcher or EncodeBatcher()
        self.encode_batch_size = encode_batch_size
        self.naive = naive
        self._scorers: dict[tuple[str, str], RowScorer] = {}

    # ---------------------------------------------------------------- public API

    async def attribute(
        self, request: AttributeRequest, *, naive: bool | None = None
    ) -> AttributeResponse:
        """Rewards, segment values and token advantages for every group of `request`."""
        await _run_sync(validate_request, request, self.limits)
        naive = self.naive if naive is None else naive
        timer = StageTimer()
        options = request.options
        retriever = self.retriever(options.retriever, "options.retriever")
        targets = [
            self._resolve_target(
                retriever, g, group.target.query_id, group.target.relevant, group.pool
            )
            for g, group in enumerate(request.groups)
        ]
        with timer.stage("segment"):
            plans, entries = await _run_sync(self._plan, request, targets, not naive)
        use_cache = options.cache and not naive and self.cache is not None
        if naive:
            values, stats = await _run_sync(
                self._evaluate_naive, retriever, entries, options.k, timer
            )
        else:
            values, stats = await self._evaluate(retriever, entries, options.k, use_cache, timer)
        stats.evaluated = sum(1 for p in plans for r in p.responses for e in r.entries if e >= 0)
        with timer.stage("attribute"):
            groups = await _run_sync(self._attribute_groups, plans, values, request)
        timings = timer.as_ms()
        return AttributeResponse(
            groups=groups,
            stats=Stats(
                coalitions=stats.evaluated,
                unique_queries=stats.unique,
                cache_hits=stats.cache_hits,
                encoded=stats.encoded,
                timings_ms=Timings(**timings),
            ),
            model=self.model_info(retriever),
        )

    async def score_queries(
        self,
        retriever_name: str,
        items: Sequence[tuple[str, ScoringTarget]],
        k: int,
        *,
        use_cache: bool = True,
    ) -> tuple[list[float], EvaluationStats, StageTimer]:
        """NDCG@k of whole query texts (the /reward path): same dedupe, cache and batching."""
        retriever = self.retriever(retriever_name, "retriever")
        timer = StageTimer()
        entries = _Entries()
        positions = [entries.add(target, text) if text else -1 for text, target in items]
        values, stats = await self._evaluate(
            retriever, entries, k, use_cache and self.cache is not None, timer
        )
        stats.evaluated = sum(1 for p in positions if p >= 0)
        return [float(values[p]) if p >= 0 else 0.0 for p in positions], stats, timer

    async def search(self, retriever_name: str, query: str, k: int) -> list[tuple[str, str, float]]:
        """The retriever's top-k products for `query`: (id, title, score)."""
        retriever = self.retriever(retriever_name, "name")
        vectors = await self.batcher.encode(
            self._lane(retriever), self._encode_fn(retriever), [query]
        )
        hits = await _run_sync(
            retriever.search_vectors, vectors, min(k, self._index_size(retriever))
        )
        catalog = retriever.catalog
        results: list[tuple[str, str, float]] = []
        for product_id, score in hits[0]:
            product = catalog.product(product_id)
            results.append((product_id, product.title if product else "", float(score)))
        return results

    def retriever(self, name: str, field: str) -> Retriever:
        """The named retriever; UnknownRetriever (404) naming `field` otherwise."""
        try:
            return self.registry.get(name)
        except UnknownRetriever:
            raise
        except LookupError:
            available = ", ".join(self.registry.names()) or "none"
            raise UnknownRetriever(
                f"{field}: no retriever named {name!r} (available: {available})", field=field
            ) from None

    def model_info(self, retriever: Retriever) -> ModelInfo:
        return ModelInfo(
            retriever=retriever.name,
            encoder=retriever.encoder.name,
            index_version=retriever.index.manifest.version,
        )

    def resolve_labels(self, retriever: Retriever, query_id: str, field: str) -> dict[str, float]:
        """The graded labels of a catalog query (UnknownQuery naming `field` otherwise)."""
        catalog = retriever.catalog
        if query_id not in catalog.queries and query_id not in catalog.labels:
            raise UnknownQuery(
                f"{field} {query_id!r} is not a query of catalog {catalog.name!r} "
                f"(retriever {retriever.name!r})",
                field=field,
            )
        return dict(catalog.labels.get(query_id, {}))

    # ---------------------------------------------------------------- planning

    def _resolve_target(
        self,
        retriever: Retriever,
        g: int,
        query_id: str | None,
        relevant: Mapping[str, float] | None,
        pool: Sequence[str] | None,
    ) -> ScoringTarget:
        if query_id is not None:
            labels = self.resolve_labels(retriever, query_id, f"groups[{g}].target.query_id")
        else:
            labels = dict(relevant or {})
        return ScoringTarget.build(labels, pool)

    def _plan(
        self, request: AttributeRequest, targets: list[ScoringTarget], dedupe: bool
    ) -> tuple[list[_GroupPlan], _Entries]:
        options = request.options
        entries = _Entries(dedupe)
        plans: list[_GroupPlan] = []
        for g, group in enumerate(request.groups):
            target = targets[g]
            plan = _GroupPlan(group.id, target)
            for r, response in enumerate(group.responses):
                field = f"groups[{g}].responses[{r}]"
                plan.responses.append(
                    self._plan_response(response, target, entries, options, field)
                )
            plans.append(plan)
        return plans, entries

    def _plan_response(
        self,
        response: Any,
        target: ScoringTarget,
        entries: _Entries,
        options: Any,
        field: str,
    ) -> _ResponsePlan:
        text: str = response.text
        q_start, q_end = extract_query(text, response.span)
        query = text[q_start:q_end]
        spans = (
            [(q_start + s, q_start + e) for s, e in segment(query, options.segmenter)]
            if query
            else []
        )
        n = len(spans)
        need_reward = response.reward is None
        if n >= 2:
            if options.estimator == "shapley" and n > self.limits.max_shapley_segments:
                raise TooManyCoalitions(
                    f"{field}.text has {n} segments; estimator=shapley is limited to "
                    f"max_shapley_segments={self.limits.max_shapley_segments}",
                    field=f"{field}.text",
                )
            rng = np.random.default_rng(coalition_seed(options.seed, query))
            try:
                coalitions = coalition_plan(
                    n,
                    estimator=options.estimator,
                    max_width=options.max_width,
                    max_coalitions=options.max_coalitions,
                    rng=rng,
                )
            except TooManyCoalitionsError as exc:
                raise TooManyCoalitions(
                    f"{field}: estimator={options.estimator} needs {exc.needed} coalitions for "
                    f"{n} segments but options.max_coalitions is {exc.limit}",
                    field="options.max_coalitions",
                ) from exc
        elif n == 1 and need_reward:
            coalitions = [frozenset({0})]
        else:
            coalitions = []
        relative = [(s - q_start, e - q_start) for s, e in spans]
        queries: list[str] = []
        indices: list[int] = []
        for members in coalitions:
            if not members:
                queries.append("")
                indices.append(-1)
                continue
            partial = partial_query(query, relative, members)
            queries.append(partial)
            indices.append(entries.add(target, partial))
        return _ResponsePlan(
            text=text,
            query_span=(q_start, q_end),
            spans=spans,
            coalitions=coalitions,
            queries=queries,
            entries=indices,
            reward=response.reward,
            token_offsets=None
            if response.token_offsets is None
            else [tuple(o) for o in response.token_offsets],  # type: ignore[misc]
        )

    # ---------------------------------------------------------------- evaluation

    def _lane(self, retriever: Retriever) -> str:
        return f"{retriever.name}\x00{retriever.encoder.name}"

    def _encode_fn(self, retriever: Retriever) -> Callable[[list[str]], np.ndarray]:
        encoder = retriever.encoder
        batch_size = self.encode_batch_size

        def encode(texts: list[str]) -> np.ndarray:
            return np.asarray(encoder.encode(texts, batch_size=batch_size), dtype=np.float32)

        return encode

    def _scorer(self, retriever: Retriever) -> RowScorer:
        key = (retriever.name, retriever.index.manifest.version)
        scorer = self._scorers.get(key)
        if scorer is None:
            scorer = self._scorers[key] = RowScorer(retriever.index.ids)
        return scorer

    @staticmethod
    def _index_size(retriever: Retriever) -> int:
        return max(1, len(retriever.index.ids))

    def _cache_keys(self, retriever: Retriever, entries: _Entries, k: int) -> list[str]:
        encoder = retriever.encoder.name
        version = retriever.index.manifest.version
        return [
            cache_key(
                retriever=retriever.name,
                encoder=encoder,
                index_version=version,
                k=k,
                target=target.digest,
                pool=target.pool_digest,
                query=text,
            )
            for target, text in entries.items
        ]

    async def _evaluate(
        self,
        retriever: Retriever,
        entries: _Entries,
        k: int,
        use_cache: bool,
        timer: StageTimer,
    ) -> tuple[np.ndarray, EvaluationStats]:
        stats = EvaluationStats(unique=len(entries.items))
        values = np.zeros(len(entries.items), dtype=np.float64)
        if not entries.items:
            return values, stats
        keys: list[str] = []
        missing = list(range(len(entries.items)))
        cache = self.cache if use_cache else None
        if cache is not None:
            with timer.stage("cache"):
                keys = await _run_sync(self._cache_keys, retriever, entries, k)
                cached = await _run_sync(cache.get_many, keys)
            missing = []
            for position, value in enumerate(cached):
                if value is None:
                    missing.append(position)
                else:
                    values[position] = value
            stats.cache_hits = len(entries.items) - len(missing)
        if not missing:
            return values, stats
        text_rows: dict[str, int] = {}
        for position in missing:
            text_rows.setdefault(entries.items[position][1], len(text_rows))
        texts = list(text_rows)
        stats.encoded = len(texts)
        with timer.stage("encode"):
            vectors = await self.batcher.encode(
                self._lane(retriever), self._encode_fn(retriever), texts
            )
        depth = min(k, self._index_size(retriever))
        with timer.stage("search"):
            _, rows = await _run_sync(retriever.index.search, vectors, depth)
        with timer.stage("score"):
            scorer = self._scorer(retriever)
            scored = await _run_sync(_score_rows, scorer, entries, missing, text_rows, rows, k)
        fresh: dict[str, float] = {}
        for position, value in zip(missing, scored, strict=True):
            values[position] = value
            if cache is not None:
                fresh[keys[position]] = value
        if cache is not None and fresh:
            with timer.stage("cache"):
                await _run_sync(cache.set_many, fresh)
        return values, stats

    def _evaluate_naive(
        self, retriever: Retriever, entries: _Entries, k: int, timer: StageTimer
    ) -> tuple[np.ndarray, EvaluationStats]:
        """One encode and one search per coalition, as the authors' code does."""
        stats = EvaluationStats(unique=len(entries.items), encoded=len(entries.items))
        values = np.zeros(len(entries.items), dtype=np.float64)
        encode = self._encode_fn(retriever)
        depth = min(k, self._index_size(retriever))
        for position, (target, text) in enumerate(entries.items):
            with timer.stage("encode"):
                vector = encode([text])
            with timer.stage("search"):
                hits = retriever.search_vectors(vector, depth)
            with timer.stage("score"):
                ranked = [product_id for product_id, _ in hits[0]]
                values[position] = ndcg_at_k(ranked, target.relevant, k, target.pool)
        return values, stats

    # ---------------------------------------------------------------- attribution

    def _attribute_groups(
        self, plans: list[_GroupPlan], values: np.ndarray, request: AttributeRequest
    ) -> list[GroupOut]:
        options = request.options
        per_group: list[tuple[list[np.ndarray], np.ndarray, list[float]]] = []
        all_advantages: list[float] = []
        for plan in plans:
            phis: list[np.ndarray] = []
            rewards: list[float] = []
            for response in plan.responses:
                phi, reward = self._response_values(response, values, options.estimator)
                phis.append(phi)
                rewards.append(reward)
            advantages = group_advantages(rewards, options.baseline)
            all_advantages.extend(float(a) for a in advantages)
            per_group.append((phis, advantages, rewards))
        batch = np.asarray(all_advantages, dtype=np.float64)
        groups: list[GroupOut] = []
        for plan, (phis, advantages, rewards) in zip(plans, per_group, strict=True):
            outputs: list[ResponseOut] = []
            for response, phi, advantage, reward in zip(
                plan.responses, phis, advantages, rewards, strict=True
            ):
                outputs.append(
                    self._response_out(
                        response, phi, float(advantage), reward, values, batch, request
                    )
                )
            groups.append(GroupOut(id=plan.id, responses=outputs))
        return groups

    @staticmethod
    def _response_values(
        response: _ResponsePlan, values: np.ndarray, estimator: str
    ) -> tuple[np.ndarray, float]:
        n = len(response.spans)
        table: dict[frozenset[int], float] = {frozenset(): 0.0}
        for members, entry in zip(response.coalitions, response.entries, strict=True):
            if entry >= 0:
                table[members] = float(values[entry])
        full = frozenset(range(n))
        reward = response.reward if response.reward is not None else table.get(full, 0.0)
        if n >= 2:
            phi = estimate(estimator, n, table)
        elif n == 1:
            phi = np.asarray([table.get(full, reward)], dtype=np.float64)
        else:
            phi = np.zeros(0, dtype=np.float64)
        return np.asarray(phi, dtype=np.float64), float(reward)

    @staticmethod
    def _response_out(
        response: _ResponsePlan,
        phi: np.ndarray,
        advantage: float,
        reward: float,
        values: np.ndarray,
        batch: np.ndarray,
        request: AttributeRequest,
    ) -> ResponseOut:
        options = request.options
        credit = segment_credit(phi) if phi.size else np.zeros(0)
        segments = [
            SegmentOut(
                start=start,
                end=end,
                text=response.text[start:end],
                value=float(phi[i]),
                credit=float(credit[i]),
            )
            for i, (start, end) in enumerate(response.spans)
        ]
        token_values: list[float] | None = None
        if response.token_offsets is not None:
            if len(response.spans) >= 2 and options.redistribution != "uniform":
                raw = token_advantages(
                    segment_spans=response.spans,
                    phi=phi,
                    token_offsets=response.token_offsets,
                    query_span=response.query_span,
                    advantage=advantage,
                    redistribution=options.redistribution,
                )
            else:
                raw = redistribute_uniform(len(response.token_offsets), advantage)
            token_values = [float(x) for x in clip_advantages(raw, options.clip, batch)]
        coalitions: list[CoalitionOut] | None = None
        if options.explain:
            coalitions = [
                CoalitionOut(
                    members=sorted(members),
                    query=query,
                    value=float(values[entry]) if entry >= 0 else 0.0,
                )
                for members, query, entry in zip(
                    response.coalitions, response.queries, response.entries, strict=True
                )
            ]
        return ResponseOut(
            reward=reward,
            advantage=advantage,
            segments=segments,
            token_advantages=token_values,
            coalitions=coalitions,
        )


def _score_rows(
    scorer: RowScorer,
    entries: _Entries,
    missing: list[int],
    text_rows: Mapping[str, int],
    rows: np.ndarray,
    k: int,
) -> list[float]:
    prepared: dict[tuple[str, str], PreparedTarget] = {}
    scores: list[float] = []
    for position in missing:
        target, text = entries.items[position]
        key = (target.digest, target.pool_digest)
        ready = prepared.get(key)
        if ready is None:
            ready = prepared[key] = scorer.prepare(target.relevant, target.pool, k)
        scores.append(scorer.score(ready, rows[text_rows[text]], k))
    return scores


async def _run_sync(function: Callable[..., T], *args: Any) -> T:
    return await anyio.to_thread.run_sync(function, *args)


__all__ = [
    "AttributionEngine",
    "EvaluationStats",
    "ScoringTarget",
    "canonical_digest",
]
