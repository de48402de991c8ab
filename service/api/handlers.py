"""Exception handlers: every error leaves as `service.errors.error_envelope` with its status.
Bad input never becomes a 500; an unexpected exception is logged and answered with a generic
500 that leaks nothing. ERROR_RESPONSES documents the error shape in the OpenAPI schema."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.errors import OspoError, Overloaded, error_envelope
from service.schemas import ErrorResponse

logger = logging.getLogger(__name__)

_LOC_ROOTS = {"body", "query", "path", "header", "cookie"}

ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorResponse} for status in (401, 404, 413, 422, 503)
}


def loc_to_field(loc: Sequence[Any]) -> str | None:
    """("body", "groups", 0, "responses", 2, "token_offsets") -> "groups[0].responses[2].token_offsets"."""
    parts = list(loc)
    if parts and parts[0] in _LOC_ROOTS:
        parts = parts[1:]
    field = ""
    for part in parts:
        if isinstance(part, int):
            field += f"[{part}]"
        elif isinstance(part, str) and not part.startswith(("function-", "json-or-python")):
            field += f".{part}" if field else part
    # A body of the wrong shape altogether (e.g. an array) has no deeper location.
    return field or ("body" if list(loc)[:1] == ["body"] else None)


def error_response(
    status: int, code: str, message: str, field: str | None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_envelope(code, message, field), status_code=status, headers=headers)


async def handle_ospo_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OspoError)
    if isinstance(exc, Overloaded):
        request.app.state.ospo.metrics.overloaded.inc()
    return error_response(exc.status, exc.code, exc.message, exc.field, exc.headers())


async def handle_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if not errors:
        return error_response(422, "invalid_request", "invalid request", None)
    first = errors[0]
    field = loc_to_field(first.get("loc", ()))
    message = str(first.get("msg", "invalid value"))
    if first.get("type") == "json_invalid":
        return error_response(
            422, "invalid_json", f"request body is not valid JSON: {message}", None
        )
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    text = f"{field}: {message}{more}" if field else f"{message}{more}"
    return error_response(422, "invalid_request", text, field)


async def handle_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    field = "body" if exc.status_code == 400 else None  # FastAPI's "error parsing the body"
    return error_response(exc.status_code, code, str(exc.detail), field, dict(exc.headers or {}))


async def handle_unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", "internal server error", None)


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(OspoError, handle_ospo_error)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_exception_handler(StarletteHTTPException, handle_http_error)
    app.add_exception_handler(Exception, handle_unexpected)


__all__ = ["ERROR_RESPONSES", "error_response", "install_handlers", "loc_to_field"]
