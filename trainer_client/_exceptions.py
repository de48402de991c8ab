"""Exceptions raised by the ospo trainer client.

The tree (catch the level you care about)::

    OspoClientError                  root: anything the client raises on purpose
    ├── TransportError               no HTTP answer arrived (after the retries)
    │   ├── ConnectError             could not connect
    │   ├── ConnectTimeout           connecting took longer than the connect timeout
    │   ├── ReadTimeout              the answer took longer than the read timeout
    │   ├── WriteTimeout             sending the body took too long
    │   ├── PoolTimeout              no free connection in the pool in time
    │   └── NetworkError             the connection broke mid-exchange
    ├── ServerError                  the service answered with an error status
    │   │                            (.status, .code, .message, .field from the error body)
    │   ├── ClientRequestError       4xx: the request is wrong; retrying will not help
    │   │   └── AuthenticationError  401: missing or wrong API key
    │   └── ServiceUnavailable       5xx (or 429) still failing after the retries
    └── ResponseFormatError          a 2xx answer whose body is not the documented shape

Mistakes in arguments that the client can see before sending (an empty group, a target
with both a query id and labels) raise ``ValueError`` instead, like any Python API.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "ClientRequestError",
    "ConnectError",
    "ConnectTimeout",
    "NetworkError",
    "OspoClientError",
    "PoolTimeout",
    "ReadTimeout",
    "ResponseFormatError",
    "ServerError",
    "ServiceUnavailable",
    "TransportError",
    "WriteTimeout",
]


class OspoClientError(Exception):
    """Root of every error the client raises on purpose."""


class TransportError(OspoClientError):
    """No HTTP answer arrived: connection refused, timed out or broken."""


class ConnectError(TransportError):
    """The TCP (or TLS) connection could not be established."""


class ConnectTimeout(TransportError):
    """Establishing the connection took longer than the connect timeout."""


class ReadTimeout(TransportError):
    """The service did not answer within the read timeout."""


class WriteTimeout(TransportError):
    """Sending the request body took longer than the write timeout."""


class PoolTimeout(TransportError):
    """No connection became free in the pool within the pool timeout."""


class NetworkError(TransportError):
    """The connection failed mid-exchange (reset, closed, protocol violation)."""


class ServerError(OspoClientError):
    """The service answered with an error status.

    ``code``, ``message`` and ``field`` come from the service's error body
    ``{"error": {"code", "message", "field"}}`` when it has one.
    """

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        where = f" (field {field})" if field else ""
        super().__init__(f"HTTP {status} {code}: {message}{where}")

    def __reduce__(self) -> tuple[type[ServerError], tuple[int, str, str, str | None]]:
        # Rebuilt from the fields, not from the formatted text, so the error survives pickling
        # (Ray ships a worker's exception to the driver; TRL broadcasts one between ranks).
        return (type(self), (self.status, self.code, self.message, self.field))


class ClientRequestError(ServerError):
    """A 4xx answer: the request itself is wrong, so it is never retried (429 excepted)."""


class AuthenticationError(ClientRequestError):
    """A 401 answer: the API key is missing or wrong."""


class ServiceUnavailable(ServerError):
    """A 5xx (or 429) answer that persisted through every retry."""


class ResponseFormatError(OspoClientError):
    """A successful answer whose body does not have the documented shape."""
