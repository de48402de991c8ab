"""AttributionEngine: the request path of POST /attribute, POST /reward and search, as
orchestration only: check (limits) -> plan (plan) -> evaluate (evaluate) -> assemble
(assemble). Every CPU stage runs on a worker thread, never on the event loop. The lookups
(retrievers, reward models, catalog labels) live here too, so the API needs nothing but the
engine."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from service.attribution import AttributionError, extract_query
from service.cache import ScoreCache
from service.engine.assemble import assemble_groups
from service.engine.batcher import EncodeBatcher
from service.engine.entries import AnyLane, Bound, EntryCounter, GroupBinding, Lane
from service.engine.evaluate import Evaluation, EvaluationStats, evaluate
from service.engine.games.retrieval import (
    RetrievalGame,
    RowScorer,
    encode_texts,
    index_size,
)
from service.engine.games.reward_model import RewardModelGame
from service.engine.limits import (
    Limits,
    check_query,
    check_reward_batch,
    check_reward_text,
    check_search,
    validate_request,
)
from service.engine.plan import RequestPlan, plan_request
from service.engine.targets import RewardTarget, ScoringTarget, parse_label
from service.engine.threads import run_sync
from service.engine.timing import StageTimer
from service.errors import InvalidRequest, UnknownQuery, UnknownRetriever, UnknownRewardModel
from service.schemas import (
    AttributeRequest,
    AttributeResponse,
    DemoQuery,
    GroupIn,
    ModelInfo,
    Options,
    RetrieverInfo,
    RewardModelInfo,
    RewardRequest,
    Stats,
    Timings,
)

if TYPE_CHECKING:
    from service.retrieval.registry import Retriever, RetrieverRegistry
    from service.rewardmodel.base import RewardModel
    from service.rewardmodel.registry import RewardModelRegistry

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scored:
    """What /reward computed: one NDCG per query, and the work it took."""

    rewards: list[float]
    stats: EvaluationStats
    total_ms: float


class AttributionEngine:
    """Turns AttributeRequests into AttributeResponses against a RetrieverRegistry, optional
    reward models and a ScoreCache. Create it inside the event loop that serves the requests
    (the batcher's worker tasks live there)."""

    def __init__(
        self,
        registry: RetrieverRegistry,
        cache: ScoreCache | None,
        *,
        limits: Limits | None = None,
        batcher: EncodeBatcher | None = None,
        encode_batch_size: int = 32,
        reward_models: RewardModelRegistry | None = None,
    ) -> None:
        self.registry = registry
        self.cache = cache
        self.limits = limits or Limits()
        self.batcher = batcher or EncodeBatcher()
        self.encode_batch_size = encode_batch_size
        self.reward_models = reward_models
        self._scorers: dict[tuple[str, str], RowScorer] = {}

    # ---------------------------------------------------------------- the request paths

    async def attribute(self, request: AttributeRequest) -> AttributeResponse:
        """Rewards, segment values and token advantages for every group of `request`."""
        await run_sync(validate_request, request, self.limits)
        timer = StageTimer()
        binder = self.binder(request.options)
        with timer.stage("segment"), refused_as_invalid():
            plan = await run_sync(plan_request, request, binder, self.limits)
        use_cache = request.options.cache and self.cache is not None
        evaluation = await evaluate(
            plan.lanes,
            plan.entries,
            self.cache if use_cache else None,
            timer,
            tolerate_failures=request.options.errors == "group",
        )
        return await self.respond(request, plan, binder, evaluation, timer)

    async def respond(
        self,
        request: AttributeRequest,
        plan: RequestPlan,
        binder: RequestBinder,
        evaluation: Evaluation,
        timer: StageTimer,
    ) -> AttributeResponse:
        """Assemble the response from the evaluated entry values (the naive benchmark
        evaluates its own way, then calls this)."""
        stats = evaluation.stats
        stats.evaluated = sum(
            1 for g in plan.groups for r in g.responses for e in r.entries if e >= 0
        )
        with timer.stage("attribute"), refused_as_invalid():
            assembled = await run_sync(
                assemble_groups, plan.groups, evaluation.values, request.options, evaluation.failed
            )
        return AttributeResponse(
            groups=assembled.groups,
            stats=Stats(
                coalitions=stats.evaluated,
                unique_queries=stats.unique,
                cache_hits=stats.cache_hits,
                encoded=stats.encoded,
                timings_ms=Timings(**timer.as_ms()),
                group_errors=sum(1 for group in assembled.groups if group.error is not None),
            ),
            model=binder.model_info(),
            clip_bound=assembled.clip_bound,
        )

    async def reward(
        self,
        request: RewardRequest,
        retriever_name: str,
        k: int,
        *,
        depth: int = 1000,
        query_tag: str = "answer",
    ) -> Scored:
        """POST /reward: NDCG@k of each response's search query (same extraction, dedupe,
        cache and batching as /attribute). Labels follow the one label grammar."""
        count = len(request.query)
        prompts_count = None if request.prompts is None else len(request.prompts)
        labels_count = None if request.labels is None else len(request.labels)
        check_reward_batch(count, prompts_count, labels_count, k, depth, self.limits)
        retriever = self.retriever(retriever_name, "retriever")
        prompts: Sequence[str | None] = request.prompts or [None] * count
        labels: Sequence[object] = request.labels or [None] * count
        timer = StageTimer()
        counter = EntryCounter()
        lane: Lane[ScoringTarget] = Lane(self.retrieval_game(retriever, k, depth))
        positions: list[int] = []
        with refused_as_invalid():
            for i, (query, prompt) in enumerate(zip(request.query, prompts, strict=True)):
                text = response_text(query, prompt)
                check_reward_text(i, text, self.limits)
                start, end = extract_query(text, None, query_tag)
                check_query(end - start, self.limits, f"query[{i}]")
                target = self.scoring_target(retriever, labels[i], f"labels[{i}]")
                positions.append(lane.add(counter, target, text[start:end]) if end > start else -1)
        evaluation = await evaluate([lane], counter.size, self.cache, timer)
        stats = evaluation.stats
        stats.evaluated = sum(1 for p in positions if p >= 0)
        rewards = [float(evaluation.values[p]) if p >= 0 else 0.0 for p in positions]
        return Scored(rewards, stats, timer.total_s() * 1000.0)

    async def search(self, retriever_name: str, query: str, k: int) -> list[tuple[str, str, float]]:
        """The retriever's top-k products for `query`: (id, title, score)."""
        check_search(query, k, self.limits)
        retriever = self.retriever(retriever_name, "name")
        vectors = await encode_texts(retriever, self.batcher, self.encode_batch_size, [query])
        hits = await run_sync(retriever.search_vectors, vectors, min(k, index_size(retriever)))
        catalog = retriever.catalog
        results: list[tuple[str, str, float]] = []
        for product_id, score in hits[0]:
            product = catalog.product(product_id)
            results.append((product_id, product.title if product else "", float(score)))
        return results

    # ---------------------------------------------------------------- lookups

    def retriever(self, name: str, field: str) -> Retriever:
        """The named retriever; UnknownRetriever (404) naming `field` otherwise."""
        try:
            return self.registry.get(name)
        except (UnknownRetriever, LookupError) as exc:
            if isinstance(exc, UnknownRetriever) and exc.field == field:
                raise
            available = ", ".join(self.registry.names()) or "none"
            raise UnknownRetriever(
                f"{field}: no retriever named {name!r} (available: {available})", field=field
            ) from None

    def retriever_names(self) -> list[str]:
        return self.registry.names()

    def retriever_infos(self) -> list[RetrieverInfo]:
        """What /v1/retrievers lists."""
        infos: list[RetrieverInfo] = []
        for name in self.registry.names():
            retriever = self.retriever(name, "name")
            manifest = retriever.index.manifest
            infos.append(
                RetrieverInfo(
                    name=name,
                    encoder=manifest.encoder,
                    dim=manifest.dim,
                    index=manifest.index_type,
                    size=manifest.size,
                    version=manifest.version,
                    catalog=retriever.catalog.name,
                    backend=retriever.backend,
                )
            )
        return infos

    def reward_model(self, name: str, field: str) -> RewardModel:
        """The named reward model; UnknownRewardModel (404) naming `field` otherwise."""
        if self.reward_models is None:
            raise UnknownRewardModel(
                f"{field}: no reward model named {name!r} (none are configured)", field=field
            )
        return self.reward_models.get(name, field)

    def reward_model_names(self) -> list[str]:
        return [] if self.reward_models is None else self.reward_models.names()

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

    def scoring_target(self, retriever: Retriever, label: object, field: str) -> ScoringTarget:
        """The labels (and pool) a trainer's label stands for (the one label grammar)."""
        parsed = parse_label(label, field)
        if parsed.query_id is not None:
            bare = isinstance(label, int) or (
                isinstance(label, str) and not label.strip().startswith("{")
            )
            id_field = field if bare else f"{field}.query_id"
            labels = self.resolve_labels(retriever, parsed.query_id, id_field)
        else:
            labels = dict(parsed.relevant or {})
        return ScoringTarget.build(labels, parsed.pool)

    def demo_queries(self, retriever_name: str, limit: int) -> tuple[str, int, list[DemoQuery]]:
        """The first `limit` labelled queries of a retriever's catalog with example
        responses: (catalog name, number of queries, queries)."""
        from service.retrieval.demo import demo_examples

        catalog = self.retriever(retriever_name, "retriever").catalog
        ids = [qid for qid in catalog.query_ids() if qid in catalog.labels][:limit]
        queries = [
            DemoQuery(id=qid, text=catalog.queries[qid], examples=demo_examples(catalog, qid))
            for qid in ids
        ]
        return catalog.name, len(catalog.queries), queries

    # ---------------------------------------------------------------- games

    def retrieval_game(self, retriever: Retriever, k: int, depth: int) -> RetrievalGame:
        return RetrievalGame(
            retriever,
            k,
            depth,
            batcher=self.batcher,
            encode_batch_size=self.encode_batch_size,
            scorer=self._scorer(retriever),
        )

    def _scorer(self, retriever: Retriever) -> RowScorer:
        key = (retriever.name, retriever.index.manifest.version)
        scorer = self._scorers.get(key)
        if scorer is None:
            scorer = self._scorers[key] = RowScorer(retriever.index.ids)
        return scorer

    def binder(self, options: Options) -> RequestBinder:
        """A request-scoped binder (the naive benchmark plans with it too)."""
        return RequestBinder(self, options)


class RequestBinder:
    """Each group's target and game for one request: the retriever is resolved only when a
    group needs it, and every group scored by the same game shares one lane."""

    def __init__(self, engine: AttributionEngine, options: Options) -> None:
        self._engine = engine
        self._options = options
        self._retriever: Retriever | None = None
        self._retrieval: Lane[ScoringTarget] | None = None
        self._reward_lanes: dict[str, Lane[RewardTarget]] = {}
        self._reward_models: list[RewardModel] = []
        self._order: list[AnyLane] = []

    def prepare(self, request: AttributeRequest) -> None:
        """Resolve the request's retriever up front when a group needs it: an unknown
        options.retriever fails the whole request, whatever options.errors says."""
        if any(group.target.reward_model is None for group in request.groups):
            self._retrieval_lane()

    def _retrieval_lane(self) -> Lane[ScoringTarget]:
        if self._retrieval is None:
            self._retriever = self._engine.retriever(self._options.retriever, "options.retriever")
            game = self._engine.retrieval_game(
                self._retriever, self._options.k, self._options.depth
            )
            self._retrieval = Lane(game)
            self._order.append(self._retrieval)
        return self._retrieval

    def bind(self, g: int, group: GroupIn) -> GroupBinding:
        target = group.target
        if target.reward_model is not None:
            model = self._engine.reward_model(
                target.reward_model, f"groups[{g}].target.reward_model"
            )
            reward_lane = self._reward_lanes.get(model.name)
            if reward_lane is None:
                reward_lane = self._reward_lanes[model.name] = Lane(RewardModelGame(model))
                self._reward_models.append(model)
                self._order.append(reward_lane)
            return Bound(reward_lane, RewardTarget.build(group.prompt or "", target.label))
        lane = self._retrieval_lane()
        assert self._retriever is not None
        if target.query_id is not None:
            labels: Mapping[str, float] = self._engine.resolve_labels(
                self._retriever, target.query_id, f"groups[{g}].target.query_id"
            )
        else:
            labels = dict(target.relevant or {})
        return Bound(lane, ScoringTarget.build(labels, group.pool))

    def lanes(self) -> list[AnyLane]:
        return list(self._order)

    def model_info(self) -> ModelInfo:
        if self._retriever is not None:
            info = self._engine.model_info(self._retriever)
        else:
            # No group used a retriever: the retriever fields stay empty strings (they are
            # required by clients of the v1 contract).
            info = ModelInfo(retriever="", encoder="", index_version="")
        if self._reward_models:
            info.reward_models = [
                RewardModelInfo(name=m.name, backend=m.spec.backend, version=m.version)
                for m in self._reward_models
            ]
        return info


@contextmanager
def refused_as_invalid() -> Iterator[None]:
    """Bad input the pure core caught becomes a 422 naming the option at fault."""
    try:
        yield
    except AttributionError as exc:
        raise InvalidRequest(str(exc), field=exc.field) from exc


def response_text(query: str, prompt: str | None) -> str:
    """The response part of `query` (prompt + response as the trainer decoded it)."""
    if prompt and query.startswith(prompt):
        return query[len(prompt) :]
    return query


__all__ = ["AttributionEngine", "RequestBinder", "Scored", "response_text"]
