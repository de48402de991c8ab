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
from pydantic import BaseModel

from service.api.deps import ServicesDep
from service.api.routes.attribute import ERROR_RESPONSES
from service.retrieval.catalog import Catalog

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
# load the page and then send the key it is given (see BearerAuthMiddleware's PUBLIC_PATHS).
PAGE_PATHS = frozenset({PAGE_PATH, f"{PAGE_PATH}/inspect.css", f"{PAGE_PATH}/inspect.js"})
# Enforces "no external assets": the browser refuses anything not served by this app.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
MAX_DEMO_QUERIES = 500


class DemoQuery(BaseModel):
    id: str
    text: str
    examples: list[str]
    """Responses to try: for demo catalog queries, from a precise search query to a vague one."""


class DemoQueriesResponse(BaseModel):
    retriever: str
    catalog: str
    total: int
    queries: list[DemoQuery]


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


def demo_examples(catalog: Catalog, query_id: str) -> list[str]:
    """Example responses for a catalog query. Demo catalog queries carry their target
    attributes, which give a precise query (every attribute), a partial one inside the
    <think>/<answer> format a policy emits, the shopper's vague request itself and a query for
    a related category; other catalogs get the query text alone."""
    from service.retrieval.demo import CATEGORIES, specific_query

    text = catalog.queries[query_id]
    attributes = catalog.query_attributes.get(query_id)
    spec = next((s for s in CATEGORIES if attributes and s.key == attributes.get("category")), None)
    if attributes is None or spec is None:
        return [text]
    precise = specific_query(attributes)
    partial_keys = ("category", "colour", "material")
    partial = specific_query({k: v for k, v in attributes.items() if k in partial_keys})
    examples = [
        precise,
        f"<think>The shopper wants {spec.noun}.</think><answer>{partial} for sale</answer>",
        text,
    ]
    related = next((s for s in CATEGORIES if spec.related and s.key == spec.related[0]), None)
    if related is not None:
        examples.append(f"{attributes.get('colour', '')} {related.noun}".strip())
    return examples


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
    catalog = services.engine.retriever(retriever, "retriever").catalog
    ids = [qid for qid in catalog.query_ids() if qid in catalog.labels][:limit]
    return DemoQueriesResponse(
        retriever=retriever,
        catalog=catalog.name,
        total=len(catalog.queries),
        queries=[
            DemoQuery(id=qid, text=catalog.queries[qid], examples=demo_examples(catalog, qid))
            for qid in ids
        ],
    )


__all__ = [
    "ASSETS",
    "PAGE_PATHS",
    "DemoQueriesResponse",
    "DemoQuery",
    "demo_examples",
    "read_asset",
    "router",
]
