"""ASGI middleware: the bearer-key check (a pure ASGI guard, so it also covers docs and unknown
paths), the request-body size limit (413 before anything parses the body) and the per-route
request metrics. Error bodies are `service.errors.error_envelope`, like every other answer."""

from __future__ import annotations

import hmac
import json
import logging
import time
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import error_envelope

if TYPE_CHECKING:
    from service.api.metrics import ServiceMetrics

logger = logging.getLogger(__name__)

_BODY_METHODS = {"POST", "PUT", "PATCH"}


PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})


async def _send_error(
    send: Send,
    status: int,
    code: str,
    message: str,
    field: str | None,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = json.dumps(error_envelope(code, message, field)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or [(b"connection", b"close")]),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BearerAuthMiddleware:
    """Requires `Authorization: Bearer <key>` on every path except /healthz, /readyz and the
    data-free paths the routes declare public (the inspection page's assets).
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
        await _send_error(
            send, 401, "unauthorized", message, "Authorization", [(b"www-authenticate", b"Bearer")]
        )


class BodyLimitMiddleware:
    """Refuses bodies over `max_bytes` with 413: at once when Content-Length says so, else as
    soon as the streamed bytes pass the limit. The accepted body is buffered and replayed, then
    later receive() calls (http.disconnect) go to the server, so disconnects stay visible."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _too_large(self, send: Send, size: str) -> None:
        await _send_error(
            send,
            413,
            "payload_too_large",
            f"request body is {size}; the limit is max_body_bytes={self.max_bytes} bytes",
            "body",
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _send_error(send, 400, "bad_request", "invalid Content-Length", "body")
                    return
                if declared > self.max_bytes:
                    await self._too_large(send, f"{declared} bytes")
                    return
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_bytes:
                await self._too_large(send, f"over {self.max_bytes} bytes")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class MetricsMiddleware:
    """Counts requests by route template and status, and observes their latency."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = scope.get("route")
            # Only route templates become label values, so unknown paths cannot grow cardinality.
            template = getattr(route, "path", None) or "unmatched"
            elapsed = time.perf_counter() - started
            self.metrics.requests.labels(route=template, status=str(status)).inc()
            self.metrics.latency.labels(route=template).observe(elapsed)
            logger.debug(
                "%s %s -> %d in %.1f ms", scope.get("method"), template, status, elapsed * 1000
            )


__all__ = ["PUBLIC_PATHS", "BearerAuthMiddleware", "BodyLimitMiddleware", "MetricsMiddleware"]
