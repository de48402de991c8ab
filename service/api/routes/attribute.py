"""POST /attribute: rewards, segment credit and token advantages for GRPO groups."""

from __future__ import annotations

import logging

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import Response

from service.api.deps import ClientGone, ServicesDep, StateDep, client_gone, run_admitted
from service.api.handlers import ERROR_RESPONSES
from service.schemas import AttributeRequest, AttributeResponse

logger = logging.getLogger(__name__)

router = APIRouter(tags=["attribution"])


@router.post(
    "/attribute",
    response_model=AttributeResponse,
    responses=ERROR_RESPONSES,  # type: ignore[arg-type]
)
async def attribute(
    body: AttributeRequest, request: Request, services: ServicesDep, state: StateDep
) -> Response:
    """Coalition rewards, segment values/credit and token advantages (see docs/API.md)."""
    try:
        result = await run_admitted(request, services, lambda: services.engine.attribute(body))
    except ClientGone:
        return client_gone("attribute")
    stats = result.stats
    state.metrics.record_attribute(stats, body.options.cache)
    for group in result.groups:
        if group.error is not None:
            state.metrics.group_errors.labels(code=group.error.code).inc()
    timings = stats.timings_ms
    logger.info(
        "attribute groups=%d group_errors=%d responses=%d coalitions=%d unique=%d cache_hits=%d "
        "encoded=%d "
        "segment_ms=%.1f cache_ms=%.1f encode_ms=%.1f search_ms=%.1f score_ms=%.1f "
        "attribute_ms=%.1f total_ms=%.1f",
        len(body.groups),
        stats.group_errors,
        sum(len(g.responses) for g in body.groups),
        stats.coalitions,
        stats.unique_queries,
        stats.cache_hits,
        stats.encoded,
        timings.segment,
        timings.cache,
        timings.encode,
        timings.search,
        timings.score,
        timings.attribute,
        timings.total,
    )
    # Serialised by pydantic-core directly: a big request carries ~10^6 token advantages and
    # FastAPI's re-validation of the response model would double the cost.
    content = await anyio.to_thread.run_sync(result.model_dump_json)
    return Response(content, media_type="application/json")
