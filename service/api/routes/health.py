"""Liveness, readiness and the Prometheus metrics endpoint."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from service.api.deps import StateDep
from service.api.metrics import CONTENT_TYPE
from service.schemas import ReadyResponse

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz", response_model=ReadyResponse, responses={503: {"model": ReadyResponse}})
async def readyz(state: StateDep) -> JSONResponse:
    """200 only when models and indexes are loaded; reports the cache backend and whether it
    is degraded (configured Redis unreachable, the in-process LRU answering)."""
    services = state.services
    if state.status != "ready" or services is None:
        return JSONResponse({"status": state.status, "cache": None}, status_code=503)
    cache = {"backend": services.cache.backend, "degraded": bool(services.cache.degraded)}
    return JSONResponse({"status": "ready", "cache": cache})


@router.get("/metrics", response_class=Response)
async def metrics(state: StateDep) -> Response:
    """Prometheus text format."""
    return Response(state.metrics.render(), media_type=CONTENT_TYPE)
