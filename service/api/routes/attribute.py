"""POST /attribute: rewards, segment credit and token advantages for GRPO groups."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import Response

from service.api.deps import ServicesDep, StateDep
from service.api.metrics import ServiceMetrics
from service.schemas import AttributeRequest, AttributeResponse, ErrorResponse, Stats

logger = logging.getLogger(__name__)

router = APIRouter(tags=["attribution"])

T = TypeVar("T")

ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorResponse} for status in (401, 404, 413, 422, 503)
}


class ClientGone(Exception):
    """The client disconnected before its work finished; the work was cancelled."""


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def _consume(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


async def run_while_connected(request: Request, work: Coroutine[object, object, T]) -> T:
    """Await `work`, cancelling it as soon as the client disconnects (ClientGone then)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        watcher.cancel()
        raise
    if task.done():
        watcher.cancel()
        return task.result()
    task.cancel()
    task.add_done_callback(_consume)
    raise ClientGone()


def record(metrics: ServiceMetrics, stats: Stats, cached: bool) -> None:
    metrics.coalitions.inc(stats.coalitions)
    if cached:
        metrics.cache_hits.inc(stats.cache_hits)
        metrics.cache_misses.inc(stats.unique_queries - stats.cache_hits)
    metrics.encoded.inc(stats.encoded)
    for stage, value in stats.timings_ms.model_dump().items():
        if stage != "total":
            metrics.stage_latency.labels(stage=stage).observe(value / 1000.0)


@router.post(
    "/attribute",
    response_model=AttributeResponse,
    response_model_exclude_none=True,
    responses=ERROR_RESPONSES,  # type: ignore[arg-type]
)
async def attribute(
    body: AttributeRequest, request: Request, services: ServicesDep, state: StateDep
) -> Response:
    """Coalition rewards, segment values/credit and token advantages (see docs/API.md)."""

    async def admitted() -> AttributeResponse:
        async with services.admission.slot():
            return await services.engine.attribute(body)

    try:
        result = await run_while_connected(request, admitted())
    except ClientGone:
        logger.info("attribute cancelled: client disconnected")
        return Response(status_code=499)
    stats = result.stats
    record(state.metrics, stats, body.options.cache)
    timings = stats.timings_ms
    logger.info(
        "attribute groups=%d responses=%d coalitions=%d unique=%d cache_hits=%d encoded=%d "
        "segment_ms=%.1f cache_ms=%.1f encode_ms=%.1f search_ms=%.1f score_ms=%.1f "
        "attribute_ms=%.1f total_ms=%.1f",
        len(body.groups),
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
    content = await anyio.to_thread.run_sync(lambda: result.model_dump_json(exclude_none=True))
    return Response(content, media_type="application/json")
