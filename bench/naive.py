"""The authors' cost shape, for benchmarks only: one model call per coalition (one encode and
one search per partial query, or one reward-model call per partial response), no dedupe, no
cache. Built on the production planner and games, so it computes exactly the same numbers as
the service while paying the per-coalition cost the service avoids."""

from __future__ import annotations

import numpy as np

from service.engine import AttributionEngine, StageTimer, validate_request
from service.engine.evaluate import Evaluation, EvaluationStats
from service.engine.plan import plan_request
from service.schemas import AttributeRequest, AttributeResponse


async def attribute_naive(
    engine: AttributionEngine, request: AttributeRequest
) -> AttributeResponse:
    """`engine.attribute(request)`, evaluated one coalition per model call."""
    validate_request(request, engine.limits)
    timer = StageTimer()
    binder = engine.binder(request.options)
    with timer.stage("segment"):
        plan = plan_request(request, binder, engine.limits, dedupe=False)
    values = np.zeros(plan.entries, dtype=np.float64)
    for lane in plan.lanes:
        raw = np.zeros(len(lane.items), dtype=np.float64)
        for i in range(len(lane.items)):
            scored, _ = await lane.evaluate([i], timer)
            raw[i] = float(scored[0])
        if lane.positions:
            values[np.asarray(lane.positions, dtype=np.int64)] = lane.values(raw)
    stats = EvaluationStats(unique=plan.entries, encoded=plan.entries)
    return await engine.respond(request, plan, binder, Evaluation(values, stats), timer)


__all__ = ["attribute_naive"]
