"""Assembly: request plans + coalition values -> the response schemas.

Per response: its coalition value table, the segment values φ (estimator; NaN = unmeasured,
sent as null), the reward; per group: the group advantages (baseline); per response again:
segment credit φ̃ (credit rule, and the `negative` mode for Â < 0), token advantages
(redistribution, token mapping) and, with `explain`, the evaluated coalitions. Clipping
(asked for with options.clip) bounds only redistributed token advantages, at
clip·std(Â over the request's scored responses). Groups that could not be scored carry their
error and no responses. Pure: numpy and the attribution core, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from service.attribution import (
    clip_bound,
    group_advantages,
    query_token_mask,
    redistribute_uniform,
    segment_credit,
    segment_values,
    token_advantages,
)
from service.engine.plan import GroupPlan, ResponsePlan
from service.errors import OspoError
from service.schemas import (
    CoalitionOut,
    ErrorBody,
    GroupOut,
    Options,
    ResponseOut,
    SegmentOut,
)


@dataclass(frozen=True)
class Assembled:
    groups: list[GroupOut]
    clip_bound: float | None  # None: clipping was not asked for


def assemble_groups(
    plans: Sequence[GroupPlan],
    values: np.ndarray,
    options: Options,
    failed: Mapping[str, OspoError] | None = None,
) -> Assembled:
    """The `groups` of the response, in request order, and the clipping bound used."""
    failed = failed or {}
    errors = [plan.error or failed.get(plan.lane) for plan in plans]
    scored: dict[int, tuple[list[np.ndarray], np.ndarray, list[float]]] = {}
    for g, (plan, error) in enumerate(zip(plans, errors, strict=True)):
        if error is not None:
            continue
        phis: list[np.ndarray] = []
        rewards: list[float] = []
        for response in plan.responses:
            phi, reward = response_values(response, values, options.estimator)
            phis.append(phi)
            rewards.append(reward)
        scored[g] = (phis, group_advantages(rewards, options.baseline), rewards)
    batch = np.concatenate([a for _, a, _ in scored.values()]) if scored else np.zeros(0)
    bound = None if options.clip is None else clip_bound(options.clip, batch)
    groups: list[GroupOut] = []
    for g, (plan, error) in enumerate(zip(plans, errors, strict=True)):
        if error is not None:
            body = ErrorBody(code=error.code, message=error.message, field=error.field)
            groups.append(GroupOut(id=plan.id, responses=[], error=body))
            continue
        phis, advantages, rewards = scored[g]
        outputs = [
            response_out(response, phi, float(advantage), reward, values, bound, options)
            for response, phi, advantage, reward in zip(
                plan.responses, phis, advantages, rewards, strict=True
            )
        ]
        groups.append(GroupOut(id=plan.id, responses=outputs))
    return Assembled(groups, bound)


def response_values(
    response: ResponsePlan, values: np.ndarray, estimator: str
) -> tuple[np.ndarray, float]:
    """Segment values φ (NaN = unmeasured) and the reward of one response."""
    n = len(response.spans)
    table: dict[frozenset[int], float] = {frozenset(): 0.0}
    for members, entry in zip(response.coalitions, response.entries, strict=True):
        if entry >= 0:
            table[members] = float(values[entry])
    full = frozenset(range(n))
    reward = response.reward if response.reward is not None else table.get(full, 0.0)
    if n == 1 and full not in table:
        # One segment and the trainer's own reward: that segment carries the whole reward.
        table[full] = reward
    return segment_values(estimator, n, table), float(reward)


def response_out(
    response: ResponsePlan,
    phi: np.ndarray,
    advantage: float,
    reward: float,
    values: np.ndarray,
    bound: float | None,
    options: Options,
) -> ResponseOut:
    credit = (
        segment_credit(phi, rule=options.credit, advantage=advantage, negative=options.negative)
        if phi.size
        else np.zeros(0)
    )
    segments = [
        SegmentOut(
            start=start,
            end=end,
            text=response.text[start:end],
            value=None if math.isnan(phi[i]) else float(phi[i]),
            credit=float(credit[i]),
        )
        for i, (start, end) in enumerate(response.spans)
    ]
    redistributed = len(response.spans) >= 2 and options.redistribution != "uniform"
    token_values: list[float] | None = None
    offsets = response.token_offsets
    if offsets is not None:
        if redistributed and bool(query_token_mask(offsets, response.query_span).any()):
            raw = token_advantages(
                segment_spans=response.spans,
                phi=phi,
                token_offsets=offsets,
                query_span=response.query_span,
                advantage=advantage,
                redistribution=options.redistribution,
                outside=options.outside,
                credit=options.credit,
                negative=options.negative,
            )
            if bound is not None:
                raw = np.clip(raw, -bound, bound)
        else:
            redistributed = False
            raw = redistribute_uniform(len(offsets), advantage)
        token_values = [float(x) for x in raw]
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
        redistributed=redistributed,
        token_advantages=token_values,
        coalitions=coalitions,
    )


__all__ = ["Assembled", "assemble_groups", "response_out", "response_values"]
