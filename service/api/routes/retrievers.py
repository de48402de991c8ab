"""GET /v1/retrievers and GET /v1/retrievers/{name}/search: what the service hosts, and the
top-k products of a query (for people inspecting retrieval or building `relevant` labels)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from service.api.deps import ClientGone, ServicesDep, client_gone, run_admitted
from service.api.handlers import ERROR_RESPONSES
from service.schemas import RetrieversResponse, SearchHit, SearchResponse

router = APIRouter(prefix="/v1/retrievers", tags=["retrieval"])


@router.get("", response_model=RetrieversResponse)
async def list_retrievers(services: ServicesDep) -> RetrieversResponse:
    return RetrieversResponse(retrievers=services.engine.retriever_infos())


@router.get("/{name}/search", response_model=SearchResponse, responses=ERROR_RESPONSES)  # type: ignore[arg-type]
async def search(
    name: str,
    request: Request,
    services: ServicesDep,
    q: Annotated[str, Query()],
    k: Annotated[int, Query()] = 10,
) -> SearchResponse | Response:
    try:
        hits = await run_admitted(request, services, lambda: services.engine.search(name, q, k))
    except ClientGone:
        return client_gone("search")
    return SearchResponse(
        results=[SearchHit(id=pid, title=title, score=score) for pid, title, score in hits]
    )
