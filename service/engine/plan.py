"""Planning: an AttributeRequest -> typed group and response plans plus the deduplicated
entries (distinct (game, target, partial text) triples) the request needs evaluated.

For every response: extract the attributed text, segment it, plan the coalitions the
estimator needs (seeded by the request seed and the query text), and build each coalition's
partial text. Entries are deduplicated across the whole request, per game ("lane"), so every
distinct partial text is scored once. Nothing here does I/O: games are only named, not
called.

With `options.errors = "group"`, a group that cannot be planned (an unknown query id or
reward model, a per-group limit) becomes a GroupPlan carrying its error and no responses, and
registers no entries; the other groups are planned as usual. Request-wide problems (options,
the retriever) always fail the request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from service.attribution import (
    AttributionError,
    TooManyCoalitionsError,
    coalition_plan,
    coalition_seed,
    extract_query,
    partial_query,
    segment,
)
from service.engine.entries import AnyLane, EntryCounter, GroupBinding
from service.engine.games.base import REWARD_MODEL, Game
from service.engine.limits import Limits, check_group, check_query, check_segments
from service.engine.targets import RewardTarget, ScoringTarget
from service.errors import InvalidRequest, OspoError, TooManyCoalitions
from service.schemas import AttributeRequest, GroupIn, Options, ResponseIn

Span = tuple[int, int]
REWARD_MODEL_SEGMENTER = "sentence"
"""Sentences are the players of the paper's reward-model setting; phrases those of search."""


class Binder(Protocol):
    """Resolves each group's target and game (the engine's lookups); request-scoped."""

    def prepare(self, request: AttributeRequest) -> None:
        """Request-wide lookups (e.g. options.retriever); their errors fail the request."""
        ...

    def bind(self, g: int, group: GroupIn) -> GroupBinding: ...

    def lanes(self) -> list[AnyLane]: ...


@dataclass(frozen=True)
class ResponsePlan:
    text: str
    query_span: Span
    spans: list[Span]  # absolute offsets into `text`
    coalitions: list[frozenset[int]]
    queries: list[str]  # partial text per coalition ("" for the empty one)
    entries: list[int]  # entry number per coalition (-1: not evaluated, v = 0)
    reward: float | None
    token_offsets: list[Span] | None


@dataclass(frozen=True)
class GroupPlan:
    id: str | None
    responses: list[ResponsePlan]
    lane: str = ""  # the game that scores the group
    error: OspoError | None = None  # why the group was not planned (errors = "group")


@dataclass(frozen=True)
class RequestPlan:
    groups: list[GroupPlan]
    lanes: list[AnyLane]
    entries: int  # number of distinct entries across all lanes


@dataclass(frozen=True)
class _Layout:
    """A response's extraction, segments and coalitions, before any entry is registered."""

    query_span: Span
    spans: list[Span]
    coalitions: list[frozenset[int]]
    queries: list[str]


def plan_request(
    request: AttributeRequest, binder: Binder, limits: Limits, *, dedupe: bool = True
) -> RequestPlan:
    """Plans of every group and the request's distinct entries. Raises OspoError (naming the
    field) for a group that cannot be planned."""
    counter = EntryCounter(dedupe)
    binder.prepare(request)
    groups: list[GroupPlan] = []
    for g, group in enumerate(request.groups):
        try:
            check_group(g, group, limits)
            bound = binder.bind(g, group)
            groups.append(_plan_group(g, group, bound, request.options, limits, counter))
        except (OspoError, AttributionError) as exc:
            if request.options.errors != "group":
                raise
            error = exc if isinstance(exc, OspoError) else InvalidRequest(str(exc), field=exc.field)
            groups.append(GroupPlan(group.id, [], error=error))
    return RequestPlan(groups=groups, lanes=binder.lanes(), entries=counter.size)


def _plan_group(
    g: int,
    group: GroupIn,
    bound: GroupBinding,
    options: Options,
    limits: Limits,
    counter: EntryCounter,
) -> GroupPlan:
    game = bound.lane.game
    layouts = [
        _layout(response, game, options, limits, f"groups[{g}].responses[{r}]")
        for r, response in enumerate(group.responses)
    ]
    # Entries are registered only once every response of the group could be planned.
    responses = [
        _register(response, layout, bound, counter, game.evaluates_empty)
        for response, layout in zip(group.responses, layouts, strict=True)
    ]
    return GroupPlan(group.id, responses, lane=game.lane)


def _layout(
    response: ResponseIn,
    game: Game[ScoringTarget] | Game[RewardTarget],
    options: Options,
    limits: Limits,
    field: str,
) -> _Layout:
    text = response.text
    segmenter: str = options.segmenter
    if game.kind == REWARD_MODEL:
        # The reward model scores the response itself: `span` (when given) picks the
        # attributed part, otherwise all of it; no <answer> extraction.
        whole = response.span if response.span is not None else (0, len(text))
        q_start, q_end = extract_query(text, whole)
        if "segmenter" not in options.model_fields_set:
            segmenter = REWARD_MODEL_SEGMENTER
    else:
        q_start, q_end = extract_query(text, response.span, options.query_tag)
    check_query(q_end - q_start, limits, f"{field}.text")
    query = text[q_start:q_end]
    relative = segment(query, segmenter) if query else []
    n = len(relative)
    check_segments(n, options, limits, field)
    need_reward = response.reward is None
    coalitions: list[frozenset[int]]
    if n >= 2:
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
    if game.evaluates_empty and frozenset() not in coalitions and (n or need_reward):
        # v(∅) is a real score here: segment values are measured from it, and it is the
        # reward of an empty response.
        coalitions.insert(0, frozenset())
    queries = [partial_query(query, relative, members) if members else "" for members in coalitions]
    spans = [(q_start + s, q_start + e) for s, e in relative]
    return _Layout((q_start, q_end), spans, coalitions, queries)


def _register(
    response: ResponseIn,
    layout: _Layout,
    bound: GroupBinding,
    counter: EntryCounter,
    evaluates_empty: bool,
) -> ResponsePlan:
    entries = [
        bound.add(counter, query) if members or evaluates_empty else -1
        for members, query in zip(layout.coalitions, layout.queries, strict=True)
    ]
    offsets = response.token_offsets
    return ResponsePlan(
        text=response.text,
        query_span=layout.query_span,
        spans=layout.spans,
        coalitions=layout.coalitions,
        queries=layout.queries,
        entries=entries,
        reward=response.reward,
        token_offsets=None if offsets is None else [(int(s), int(e)) for s, e in offsets],
    )


__all__ = [
    "Binder",
    "GroupPlan",
    "RequestPlan",
    "ResponsePlan",
    "plan_request",
]
