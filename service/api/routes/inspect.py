"""The inspection page: GET /inspect (a self-contained HTML/CSS/JS page, package data under
service/api/static, no external assets) and GET /v1/demo/queries (catalog queries with example
responses, for the page's picker). The page itself calls POST /attribute with explain: true."""

from __future__ import annotations

import logging
from functools import cache
from importlib import resources
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from service.api.deps import ServicesDep
from service.api.handlers import ERROR_RESPONSES
from service.schemas import DemoQueriesResponse

logger = logging.getLogger(__name__)

router = APIRouter(tags=["inspect"])

PAGE_PATH = "/inspect"
# name -> media type; nothing else under /inspect/ is served.
ASSETS = {
    "inspect.html": "text/html; charset=utf-8",
    "inspect.css": "text/css; charset=utf-8",
    "inspect.js": "text/javascript; charset=utf-8",
}
# The paths that carry no data: when API-key auth is on, these may be public so a browser can
# load the page and then send the key it is given (see BearerAuthMiddleware).
PAGE_PATHS = frozenset({PAGE_PATH, f"{PAGE_PATH}/inspect.css", f"{PAGE_PATH}/inspect.js"})
# Enforces "no external assets": the browser refuses anything not served by this app.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
MAX_DEMO_QUERIES = 500


@cache
def read_asset(name: str) -> bytes:
    """A file of the page, from package data (pyproject: service "api/static/*")."""
    return resources.files("service.api").joinpath("static", name).read_bytes()


def _asset_response(name: str) -> Response:
    return Response(
        read_asset(name),
        media_type=ASSETS[name],
        headers={
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-cache",
        },
    )


@router.get(PAGE_PATH, include_in_schema=False)
async def inspect_page() -> Response:
    """The inspection page."""
    return _asset_response("inspect.html")


@router.get(f"{PAGE_PATH}/inspect.css", include_in_schema=False)
async def inspect_css() -> Response:
    return _asset_response("inspect.css")


@router.get(f"{PAGE_PATH}/inspect.js", include_in_schema=False)
async def inspect_js() -> Response:
    return _asset_response("inspect.js")


@router.get(
    "/v1/demo/queries",
    response_model=DemoQueriesResponse,
    responses=ERROR_RESPONSES,  # type: ignore[arg-type]
)
async def demo_queries(
    services: ServicesDep,
    retriever: Annotated[str, Query(min_length=1, max_length=256)] = "default",
    limit: Annotated[int, Query(ge=1, le=MAX_DEMO_QUERIES)] = 40,
) -> DemoQueriesResponse:
    """The first `limit` queries (catalog order) of a retriever's catalog, with ids, text and
    example responses: what the inspection page offers in its picker."""
    catalog, total, queries = services.engine.demo_queries(retriever, limit)
    return DemoQueriesResponse(retriever=retriever, catalog=catalog, total=total, queries=queries)


__all__ = [
    "ASSETS",
    "PAGE_PATHS",
    "read_asset",
    "router",
]
