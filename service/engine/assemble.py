"""Assembly: request plans + coalition values -> the response schemas.

Per response: its coalition value table, the segment values (estimator), the reward; per
group: the group advantages (baseline); per response again: segment credit, token
advantages (redistribution, token mapping, clipping) and, with `explain`, the evaluated
coalitions. Pure: numpy and the attribution core, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from service.attribution import (
    clip_advantages,
    estimate,
    group_advantages,
    redistribute_uniform,
    segment_credit,
    token_advantages,
)
from service.engine.plan import GroupPlan, ResponsePlan
from service.schemas import CoalitionOut, GroupOut, Options, ResponseOut, SegmentOut


def assemble_groups(
    plans: Sequence[GroupPlan], values: np.ndarray, options: Options
) -> list[GroupOut]:
    """The `groups` of the response, in request order."""
    per_group: list[tuple[list[np.ndarray], np.ndarray, list[float]]] = []
    all_advantages: list[float] = []
    for plan in plans:
        phis: list[np.ndarray] = []
        rewards: list[float] = []
        for response in plan.responses:
            phi, reward = response_values(response, values, options.estimator)
            phis.append(phi)
            rewards.append(reward)
        advantages = group_advantages(rewards, options.baseline)
        all_advantages.extend(float(a) for a in advantages)
        per_group.append((phis, advantages, rewards))
    batch = np.asarray(all_advantages, dtype=np.float64)
    groups: list[GroupOut] = []
    for plan, (phis, advantages, rewards) in zip(plans, per_group, strict=True):
        outputs = [
            response_out(response, phi, float(advantage), reward, values, batch, options)
            for response, phi, advantage, reward in zip(
                plan.responses, phis, advantages, rewards, strict=True
            )
        ]
        groups.append(GroupOut(id=plan.id, responses=outputs))
    return groups


def response_values(
    response: ResponsePlan, values: np.ndarray, estimator: str
) -> tuple[np.ndarray, float]:
    """Segment values φ and the reward of one response."""
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


def response_out(
    response: ResponsePlan,
    phi: np.ndarray,
    advantage: float,
    reward: float,
    values: np.ndarray,
    batch: np.ndarray,
    options: Options,
) -> ResponseOut:
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


__all__ = ["assemble_groups", "response_out", "response_values"]
