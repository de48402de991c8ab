"""Request-scoped dependencies: the loaded services of the app (503 until they are ready)
and the bearer-key check (a pure ASGI guard, so it also covers docs and unknown paths)."""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import NotReady

if TYPE_CHECKING:
    from service.api.metrics import ServiceMetrics
    from service.cache import ScoreCache
    from service.config import Settings
    from service.engine import Admission, AttributionEngine
    from service.retrieval.registry import RetrieverRegistry

PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})


@dataclass
class Services:
    """What the lifespan loads: built once per app, shared by every request."""

    registry: RetrieverRegistry
    cache: ScoreCache
    engine: AttributionEngine
    admission: Admission


@dataclass
class AppState:
    settings: Settings
    metrics: ServiceMetrics
    status: str = "loading"  # loading | ready | failed
    services: Services | None = None
    error: str | None = field(default=None)


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.ospo
    return state


def get_services(request: Request) -> Services:
    state = get_state(request)
    if state.services is None or state.status != "ready":
        raise NotReady(f"the service is {state.status}: models and indexes are not loaded yet")
    return state.services


StateDep = Annotated[AppState, Depends(get_state)]
ServicesDep = Annotated[Services, Depends(get_services)]


class BearerAuthMiddleware:
    """Requires `Authorization: Bearer <key>` on every path except /healthz, /readyz and the
    data-free paths route modules declare public (the inspection page's assets).
    Compared in constant time; the key is never logged or echoed."""

    def __init__(
        self, app: ASGIApp, api_key: str, public_paths: frozenset[str] = PUBLIC_PATHS
    ) -> None:
        self.app = app
        self._expected = f"Bearer {api_key}".encode()
        self._public = PUBLIC_PATHS | public_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in self._public:
            await self.app(scope, receive, send)
            return
        given = b""
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                given = value
                break
        if hmac.compare_digest(given, self._expected):
            await self.app(scope, receive, send)
            return
        message = "missing bearer token" if not given else "invalid bearer token"
        body = json.dumps(
            {"error": {"code": "unauthorized", "message": message, "field": "Authorization"}}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b"Bearer"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


__all__ = [
    "PUBLIC_PATHS",
    "AppState",
    "BearerAuthMiddleware",
    "Services",
    "ServicesDep",
    "StateDep",
    "get_services",
    "get_state",
]
