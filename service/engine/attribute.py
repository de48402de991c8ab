"""AttributionEngine: the request path of POST /attribute and POST /reward.

For one request: extract and segment every response, plan its coalitions, build the partial
texts, deduplicate them across the whole request, look them all up in the score cache in
one round trip, evaluate only the misses with their game (service.engine.games: for the
retrieval game one micro-batched encode, one batched search and NDCG; for a reward-model game
one batched scoring call), write the new scores back in one pipeline, then run the estimators
and the redistribution. Every CPU stage runs on a worker thread, never on the event loop.

`naive` mode reproduces the cost structure of the authors' released code (one encode and one
search per coalition, no dedupe, no cache); it exists only to be measured against.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from service.attribution import (
    TooManyCoalitionsError,
    clip_advantages,
    coalition_plan,
    coalition_seed,
    estimate,
    extract_query,
    group_advantages,
    partial_query,
    redistribute_uniform,
    segment,
    segment_credit,
    token_advantages,
)
from service.cache import ScoreCache
from service.engine.batcher import EncodeBatcher
from service.engine.games import (
    RETRIEVAL_LANE,
    REWARD_MODEL,
    Game,
    GameShape,
    RetrievalGame,
    RetrievalShape,
    RewardModelGame,
    RewardTarget,
    ScoringTarget,
    canonical_digest,
    encode_function,
    encode_lane,
    index_size,
    run_sync,
)
from service.engine.limits import Limits, validate_request
from service.engine.scoring import RowScorer
from service.engine.timing import StageTimer
from service.errors import InvalidRequest, TooManyCoalitions, UnknownQuery, UnknownRetriever
from service.rewardmodel.base import UnknownRewardModel
from service.schemas import (
    AttributeRequest,
    AttributeResponse,
    CoalitionOut,
    GroupOut,
    ModelInfo,
    ResponseOut,
    RewardModelInfo,
    SegmentOut,
    Stats,
    Timings,
)

if TYPE_CHECKING:
    from service.retrieval.registry import Retriever, RetrieverRegistry
    from service.rewardmodel.base import RewardModel
    from service.rewardmodel.registry import RewardModelRegistry

logger = logging.getLogger(__name__)

Span = tuple[int, int]

RETRIEVAL_SHAPE = RetrievalShape()
# Sentences are the players of the paper's reward-model setting; phrases those of search.
REWARD_MODEL_SEGMENTER = "sentence"


@dataclass
class _ResponsePlan:
    text: str
    query_span: Span
    spans: list[Span]  # absolute offsets into `text`
    coalitions: list[frozenset[int]]
    queries: list[str]  # partial text per coalition ("" for the empty one)
    entries: list[int]  # unique-entry index per coalition (-1: not evaluated)
    reward: float | None
    token_offsets: list[Span] | None


@dataclass
class _GroupPlan:
    id: str | None
    target: Any  # ScoringTarget | RewardTarget
    responses: list[_ResponsePlan] = field(default_factory=list)


@dataclass
class EvaluationStats:
    unique: int = 0
    cache_hits: int = 0
    encoded: int = 0
    evaluated: int = 0


class _Entries:
    """Distinct (game lane, target, partial text) triples of one request, in first-seen order;
    `items[i]` is (target, text), `lanes[i]` the game it belongs to."""

    def __init__(self, dedupe: bool = True) -> None:
        self.dedupe = dedupe
        self.items: list[tuple[Any, str]] = []
        self.lanes: list[str] = []
        self._index: dict[tuple[str, str, str], int] = {}

    def add(self, target: Any, text: str, lane: str = RETRIEVAL_LANE) -> int:
        key = (lane, target.key, text)
        if self.dedupe:
            found = self._index.get(key)
            if found is not None:
                return found
        self._index[key] = len(self.items)
        self.items.append((target, text))
        self.lanes.append(lane)
        return len(self.items) - 1

    def by_lane(self) -> dict[str, list[int]]:
        positions: dict[str, list[int]] = {}
        for position, lane in enumerate(self.lanes):
            positions.setdefault(lane, []).append(position)
        return positions


@dataclass
class _Binding:
    """What a request's groups are scored with: one target and one game per group."""

    targets: list[Any] = field(default_factory=list)
    shapes: list[GameShape] = field(default_factory=list)
    games: dict[str, Game] = field(default_factory=dict)
    retriever: Retriever | None = None
    reward_models: list[RewardModel] = field(default_factory=list)


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
        naive: bool = False,
        reward_models: RewardModelRegistry | None = None,
    ) -> None:
        self.registry = registry
        self.cache = cache
        self.limits = limits or Limits()
        self.batcher = batcher or EncodeBatcher()
        self.encode_batch_size = encode_batch_size
        self.naive = naive
        self.reward_models = reward_models
        self._scorers: dict[tuple[str, str], RowScorer] = {}

    # ---------------------------------------------------------------- public API

    async def attribute(
        self, request: AttributeRequest, *, naive: bool | None = None
    ) -> AttributeResponse:
        """Rewards, segment values and token advantages for every group of `request`."""
        await run_sync(validate_request, request, self.limits)
        naive = self.naive if naive is None else naive
        timer = StageTimer()
        options = request.options
        binding = self._bind(request)
        with timer.stage("segment"):
            plans, entries = await run_sync(
                self._plan, request, binding.targets, not naive, binding.shapes
            )
        use_cache = options.cache and not naive and self.cache is not None
        if naive:
            values, stats = await self._evaluate_naive(binding.games, entries, timer)
        else:
            values, stats = await self._evaluate(binding.games, entries, use_cache, timer)
        stats.evaluated = sum(1 for p in plans for r in p.responses for e in r.entries if e >= 0)
        with timer.stage("attribute"):
            groups = await run_sync(self._attribute_groups, plans, values, request)
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
            model=self._request_model_info(binding),
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
        games: dict[str, Game] = {RETRIEVAL_LANE: self._retrieval_game(retriever, k)}
        values, stats = await self._evaluate(
            games, entries, use_cache and self.cache is not None, timer
        )
        stats.evaluated = sum(1 for p in positions if p >= 0)
        return [float(values[p]) if p >= 0 else 0.0 for p in positions], stats, timer

    async def search(self, retriever_name: str, query: str, k: int) -> list[tuple[str, str, float]]:
        """The retriever's top-k products for `query`: (id, title, score)."""
        retriever = self.retriever(retriever_name, "name")
        vectors = await self.batcher.encode(
            encode_lane(retriever), encode_function(retriever, self.encode_batch_size), [query]
        )
        hits = await run_sync(retriever.search_vectors, vectors, min(k, index_size(retriever)))
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

    def reward_model(self, name: str, field: str) -> RewardModel:
        """The named reward model; UnknownRewardModel (404) naming `field` otherwise."""
        if self.reward_models is None:
            raise UnknownRewardModel(
                f"{field}: no reward model named {name!r} (none are configured)", field=field
            )
        return self.reward_models.get(name, field)

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

    def _bind(self, request: AttributeRequest) -> _Binding:
        """Each group's target and game; the retriever is resolved only when a group needs it."""
        options = request.options
        binding = _Binding()
        for g, group in enumerate(request.groups):
            target = group.target
            if target.reward_model is not None:
                game = self._reward_model_game(binding, g, group)
                binding.targets.append(RewardTarget.build(group.prompt or "", target.label))
                binding.shapes.append(game)
                continue
            if binding.retriever is None:
                binding.retriever = self.retriever(options.retriever, "options.retriever")
                binding.games[RETRIEVAL_LANE] = self._retrieval_game(binding.retriever, options.k)
            binding.targets.append(
                self._resolve_target(
                    binding.retriever, g, target.query_id, target.relevant, group.pool
                )
            )
            binding.shapes.append(binding.games[RETRIEVAL_LANE])
        return binding

    def _reward_model_game(self, binding: _Binding, g: int, group: Any) -> Game:
        gfield = f"groups[{g}]"
        model = self.reward_model(group.target.reward_model, f"{gfield}.target.reward_model")
        if group.prompt is None:
            raise InvalidRequest(
                f"{gfield}.prompt is required with a reward_model target: the reward model "
                'scores prompt + response (send "" for a model that needs no prompt)',
                field=f"{gfield}.prompt",
            )
        if len(group.prompt) > self.limits.max_text_chars:
            raise InvalidRequest(
                f"{gfield}.prompt has {len(group.prompt)} characters; the limit is "
                f"max_text_chars={self.limits.max_text_chars}",
                field=f"{gfield}.prompt",
            )
        if group.pool is not None:
            raise InvalidRequest(
                f"{gfield}.pool applies to retrieval targets only; omit it with a reward_model "
                "target",
                field=f"{gfield}.pool",
            )
        game = RewardModelGame(model)
        existing = binding.games.get(game.lane)
        if existing is not None:
            return existing
        binding.games[game.lane] = game
        binding.reward_models.append(model)
        return game

    def _retrieval_game(self, retriever: Retriever, k: int) -> RetrievalGame:
        return RetrievalGame(
            retriever,
            k,
            batcher=self.batcher,
            encode_batch_size=self.encode_batch_size,
            scorer=self._scorer(retriever),
        )

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
        self,
        request: AttributeRequest,
        targets: Sequence[Any],
        dedupe: bool,
        shapes: Sequence[GameShape] | None = None,
    ) -> tuple[list[_GroupPlan], _Entries]:
        options = request.options
        entries = _Entries(dedupe)
        plans: list[_GroupPlan] = []
        for g, group in enumerate(request.groups):
            target = targets[g]
            shape = RETRIEVAL_SHAPE if shapes is None else shapes[g]
            plan = _GroupPlan(group.id, target)
            for r, response in enumerate(group.responses):
                field = f"groups[{g}].responses[{r}]"
                plan.responses.append(
                    self._plan_response(response, target, entries, options, field, shape)
                )
            plans.append(plan)
        return plans, entries

    def _plan_response(
        self,
        response: Any,
        target: Any,
        entries: _Entries,
        options: Any,
        field: str,
        shape: GameShape = RETRIEVAL_SHAPE,
    ) -> _ResponsePlan:
        text: str = response.text
        segmenter: str = options.segmenter
        if shape.kind == REWARD_MODEL:
            # The reward model scores the response itself: `span` (when given) picks the
            # attributed part, otherwise all of it; no <answer> extraction.
            whole = response.span if response.span is not None else (0, len(text))
            q_start, q_end = extract_query(text, whole)
            if "segmenter" not in options.model_fields_set:
                segmenter = REWARD_MODEL_SEGMENTER
        else:
            q_start, q_end = extract_query(text, response.span)
        query = text[q_start:q_end]
        spans = [(q_start + s, q_start + e) for s, e in segment(query, segmenter)] if query else []
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
                    contiguous=options.sampler == "contiguous",
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
        if shape.evaluates_empty and frozenset() not in coalitions and (n or need_reward):
            # v(∅) is a real score here: segment values are measured from it, and it is the
            # reward of an empty response.
            coalitions.insert(0, frozenset())
        relative = [(s - q_start, e - q_start) for s, e in spans]
        queries: list[str] = []
        indices: list[int] = []
        for members in coalitions:
            if not members:
                queries.append("")
                indices.append(entries.add(target, "", shape.lane) if shape.evaluates_empty else -1)
                continue
            partial = partial_query(query, relative, members)
            queries.append(partial)
            indices.append(entries.add(target, partial, shape.lane))
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

    def _scorer(self, retriever: Retriever) -> RowScorer:
        key = (retriever.name, retriever.index.manifest.version)
        scorer = self._scorers.get(key)
        if scorer is None:
            scorer = self._scorers[key] = RowScorer(retriever.index.ids)
        return scorer

    async def _evaluate(
        self,
        games: Mapping[str, Game],
        entries: _Entries,
        use_cache: bool,
        timer: StageTimer,
    ) -> tuple[np.ndarray, EvaluationStats]:
        """Values of every entry: one cache round trip for all games, each game's misses in
        one evaluation, one cache write."""
        count = len(entries.items)
        stats = EvaluationStats(unique=count)
        raw = np.zeros(count, dtype=np.float64)
        if not count:
            return raw, stats
        keys: list[str] = []
        missing = list(range(count))
        cache = self.cache if use_cache else None
        if cache is not None:
            with timer.stage("cache"):
                keys = await run_sync(_cache_keys, games, entries)
                cached = await run_sync(cache.get_many, keys)
            missing = []
            for position, value in enumerate(cached):
                if value is None:
                    missing.append(position)
                else:
                    raw[position] = value
            stats.cache_hits = count - len(missing)
        if missing:
            pending: dict[str, list[int]] = {}
            for position in missing:
                pending.setdefault(entries.lanes[position], []).append(position)
            fresh: dict[str, float] = {}
            for lane, positions in pending.items():
                scored, evaluated = await games[lane].evaluate(
                    [entries.items[p] for p in positions], timer
                )
                stats.encoded += evaluated
                for position, value in zip(positions, scored.tolist(), strict=True):
                    raw[position] = value
                    if cache is not None:
                        fresh[keys[position]] = value
            if cache is not None and fresh:
                with timer.stage("cache"):
                    await run_sync(cache.set_many, fresh)
        return _game_values(games, entries, raw), stats

    async def _evaluate_naive(
        self, games: Mapping[str, Game], entries: _Entries, timer: StageTimer
    ) -> tuple[np.ndarray, EvaluationStats]:
        """One model call per coalition, as the authors' code does."""
        count = len(entries.items)
        stats = EvaluationStats(unique=count, encoded=count)
        raw = np.zeros(count, dtype=np.float64)
        for lane, positions in entries.by_lane().items():
            raw[positions] = await games[lane].evaluate_naive(
                [entries.items[p] for p in positions], timer
            )
        return _game_values(games, entries, raw), stats

    def _request_model_info(self, binding: _Binding) -> ModelInfo:
        if binding.retriever is not None:
            info = self.model_info(binding.retriever)
        else:
            # No group used a retriever: the retriever fields stay empty strings (they are
            # required by clients of the v1 contract).
            info = ModelInfo(retriever="", encoder="", index_version="")
        if binding.reward_models:
            info.reward_models = [
                RewardModelInfo(name=m.name, backend=m.spec.backend, version=m.version)
                for m in binding.reward_models
            ]
        return info

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
        # The estimators take v(∅) = 0: a game with a real v(∅) (a reward model's score of
        # the empty response) is measured from it, so Σφ = v(N) - v(∅) (myerson, shapley).
        empty = table[frozenset()]
        if empty != 0.0:
            table = {members: value - empty for members, value in table.items()}
        if n >= 2:
            phi = estimate(estimator, n, table)
        elif n == 1:
            phi = np.asarray([table.get(full, reward - empty)], dtype=np.float64)
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
                    outside=options.outside,
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


def _cache_keys(games: Mapping[str, Game], entries: _Entries) -> list[str]:
    keys = [""] * len(entries.items)
    for lane, positions in entries.by_lane().items():
        lane_keys = games[lane].cache_keys([entries.items[p] for p in positions])
        for position, key in zip(positions, lane_keys, strict=True):
            keys[position] = key
    return keys


def _game_values(games: Mapping[str, Game], entries: _Entries, raw: np.ndarray) -> np.ndarray:
    """Coalition values of raw scores, each through its own game's mapping."""
    lanes = entries.by_lane()
    if len(lanes) == 1:
        (lane,) = lanes
        return games[lane].values(raw)
    values = raw.copy()
    for lane, positions in lanes.items():
        values[positions] = games[lane].values(raw[positions])
    return values


__all__ = [
    "AttributionEngine",
    "EvaluationStats",
    "RewardTarget",
    "ScoringTarget",
    "canonical_digest",
]
