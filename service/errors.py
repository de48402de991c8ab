"""The error tree of the service and the one error-envelope builder.

Every refusal is a named OspoError with a code, a message, the offending request field and
an HTTP status; every error body on the wire is `error_envelope(...)`. No web framework is
imported here, so every layer below the API can raise these::

    OspoError                     400 bad_request
    ├── InvalidRequest            422 invalid_request
    │   ├── TooManyCoalitions     422 too_many_coalitions
    │   └── ConfigError           422 config_error (service.config: a bad config file)
    ├── PayloadTooLarge           413 payload_too_large
    ├── Unauthorized              401 unauthorized
    ├── NotFound                  404 not_found
    │   ├── UnknownRetriever      404 unknown_retriever
    │   ├── UnknownQuery          404 unknown_query
    │   └── UnknownRewardModel    404 unknown_reward_model
    ├── Overloaded                503 overloaded (+ Retry-After)
    ├── NotReady                  503 not_ready
    ├── ResourceError             503 resource_error: a catalog, encoder or index cannot be
    │                             loaded or built (service.retrieval; start-up, one line)
    └── BackendError              502 backend_error, 504 backend_timeout
        └── RewardModelError      (service.rewardmodel: names the failing model)
"""

from __future__ import annotations


def error_envelope(code: str, message: str, field: str | None = None) -> dict[str, object]:
    """The JSON body of every error answer: `{"error": {"code", "message", "field"}}`."""
    return {"error": {"code": code, "message": message, "field": field}}


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
        return error_envelope(self.code, self.message, self.field)

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


class UnknownRewardModel(NotFound):
    code = "unknown_reward_model"


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


class ResourceError(OspoError):
    """A catalog, encoder or index cannot be loaded or built; its message is one line naming
    the file or model and the reason (the service refuses to start with it)."""

    status = 503
    code = "resource_error"


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
    "ResourceError",
    "TooManyCoalitions",
    "Unauthorized",
    "UnknownQuery",
    "UnknownRetriever",
    "UnknownRewardModel",
    "error_envelope",
]
