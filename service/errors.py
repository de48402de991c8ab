"""The error tree of the service: every refusal is a named OspoError with a code, a message,
the offending request field and an HTTP status. No web framework is imported here, so the
engine and the retrieval layer can raise these too."""

from __future__ import annotations


class OspoError(Exception):
    """Base of every error the service reports to a client as `{"error": {...}}`."""

    status: int = 400
    code: str = "bad_request"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code

    def to_dict(self) -> dict[str, object]:
        return {"error": {"code": self.code, "message": self.message, "field": self.field}}

    def headers(self) -> dict[str, str]:
        return {}


class InvalidRequest(OspoError):
    status = 422
    code = "invalid_request"


class TooManyCoalitions(InvalidRequest):
    code = "too_many_coalitions"


class PayloadTooLarge(OspoError):
    status = 413
    code = "payload_too_large"


class Unauthorized(OspoError):
    status = 401
    code = "unauthorized"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class NotFound(OspoError):
    status = 404
    code = "not_found"


class UnknownRetriever(NotFound):
    code = "unknown_retriever"


class UnknownQuery(NotFound):
    code = "unknown_query"


class Overloaded(OspoError):
    """The work queue is full; the client should retry after `retry_after_s` seconds."""

    status = 503
    code = "overloaded"

    def __init__(
        self, message: str, *, retry_after_s: float = 1.0, field: str | None = None
    ) -> None:
        super().__init__(message, field=field)
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        # Retry-After takes whole seconds; never advertise 0 (that invites a hot retry loop).
        return {"Retry-After": str(max(1, round(self.retry_after_s)))}


class NotReady(OspoError):
    status = 503
    code = "not_ready"


class BackendError(OspoError):
    """A dependency (encoder, index) failed; 502, or 504 when it timed out."""

    status = 502
    code = "backend_error"

    def __init__(self, message: str, *, timeout: bool = False, field: str | None = None) -> None:
        super().__init__(message, field=field)
        if timeout:
            self.status = 504
            self.code = "backend_timeout"


__all__ = [
    "BackendError",
    "InvalidRequest",
    "NotFound",
    "NotReady",
    "OspoError",
    "Overloaded",
    "PayloadTooLarge",
    "TooManyCoalitions",
    "Unauthorized",
    "UnknownQuery",
    "UnknownRetriever",
]
