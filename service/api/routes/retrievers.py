"""GET /v1/retrievers and GET /v1/retrievers/{name}/search: what the service hosts, and the
top-k products of a query (for people inspecting retrieval or building `relevant` labels)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from service.api.deps import ServicesDep, StateDep
from service.api.routes.attribute import ERROR_RESPONSES
from service.errors import InvalidRequest
from service.schemas import RetrieverInfo, RetrieversResponse, SearchHit, SearchResponse

router = APIRouter(prefix="/v1/retrievers", tags=["retrieval"])


@router.get("", response_model=RetrieversResponse)
async def list_retrievers(services: ServicesDep) -> RetrieversResponse:
    infos: list[RetrieverInfo] = []
    for name in services.registry.names():
        retriever = services.engine.retriever(name, "name")
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
            )
        )
    return RetrieversResponse(retrievers=infos)


@router.get("/{name}/search", response_model=SearchResponse, responses=ERROR_RESPONSES)  # type: ignore[arg-type]
async def search(
    name: str,
    services: ServicesDep,
    state: StateDep,
    q: Annotated[str, Query()],
    k: Annotated[int, Query()] = 10,
) -> SearchResponse:
    settings = state.settings
    if not q.strip():
        raise InvalidRequest("q is empty", field="q")
    if len(q) > settings.max_text_chars:
        raise InvalidRequest(
            f"q has {len(q)} characters; the limit is max_text_chars={settings.max_text_chars}",
            field="q",
        )
    if not 1 <= k <= settings.max_k:
        raise InvalidRequest(
            f"k is {k}; it must be between 1 and max_k={settings.max_k}", field="k"
        )
    services.engine.retriever(name, "name")
    async with services.admission.slot():
        hits = await services.engine.search(name, q, k)
    return SearchResponse(
        results=[SearchHit(id=pid, title=title, score=score) for pid, title, score in hits]
    )
