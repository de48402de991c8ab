"""When to retry a request, how long to wait, and which exception a failure becomes.

Pure functions and small values, no I/O: both clients run the same loop around
:func:`next_step` and differ only in how they send and sleep. Every request is deterministic
on the service side, so retrying any of them (timeouts and 5xx included) is safe.

What is retried: transport failures (refused, reset, timed out) and the statuses 429 and 5xx.
What is not: every other 4xx (the request itself is wrong; retrying cannot help). How long:
at most ``max_retries`` retries and, when ``max_elapsed_s`` is set, no retry whose wait would
end past that many seconds after the call started (each attempt's timeout is also cut to the
time left, so a stalled service cannot hold a call much past its budget).
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from ._exceptions import (
    AuthenticationError,
    ClientRequestError,
    ConnectError,
    ConnectTimeout,
    NetworkError,
    OspoClientError,
    PoolTimeout,
    ReadTimeout,
    ServerError,
    ServiceUnavailable,
    TransportError,
    WriteTimeout,
)

__all__ = [
    "RETRYABLE_STATUSES",
    "RetryPolicy",
    "backoff_delay",
    "error_from_response",
    "is_retryable_status",
    "next_step",
    "parse_retry_after",
    "transport_error",
]

logger = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before retrying.

    Attempt ``a`` (0-based) that failed waits ``min(backoff_max, backoff_base * 2**a)``
    scaled by a jitter factor in [0.5, 1); a ``Retry-After`` header replaces that with the
    server's figure (capped at ``retry_after_max``). At most ``max_retries`` retries follow
    the first attempt (``None``: no count limit, then ``max_elapsed_s`` must bound the time).
    With ``max_elapsed_s``, a retry is made only if its wait ends within that many seconds of
    the call's start, and each attempt's timeout is cut to the time left.
    """

    max_retries: int | None = 5
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    retry_after_max: float = 120.0
    max_elapsed_s: float | None = None

    def __post_init__(self) -> None:
        if self.max_retries is not None and self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if self.backoff_base < 0 or self.backoff_max < 0 or self.retry_after_max < 0:
            raise ValueError("backoff times must be >= 0")
        if self.max_elapsed_s is not None and self.max_elapsed_s <= 0:
            raise ValueError("max_elapsed_s must be > 0")
        if self.max_retries is None and self.max_elapsed_s is None:
            raise ValueError("an unlimited max_retries needs max_elapsed_s")


def is_retryable_status(status: int) -> bool:
    return status in RETRYABLE_STATUSES or status >= 500


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or an HTTP date)."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def backoff_delay(
    policy: RetryPolicy, attempt: int, retry_after: float | None, jitter: float
) -> float:
    """Seconds to sleep after failed attempt ``attempt``; ``jitter`` is uniform in [0, 1)."""
    if retry_after is not None:
        return min(retry_after, policy.retry_after_max)
    ceiling = min(policy.backoff_max, policy.backoff_base * (2.0 ** min(attempt, 64)))
    return ceiling * (0.5 + 0.5 * jitter)


def transport_error(exc: httpx.TransportError) -> TransportError:
    """Our exception for an httpx transport failure."""
    mapping: list[tuple[type[httpx.TransportError], type[TransportError]]] = [
        (httpx.ConnectTimeout, ConnectTimeout),
        (httpx.ReadTimeout, ReadTimeout),
        (httpx.WriteTimeout, WriteTimeout),
        (httpx.PoolTimeout, PoolTimeout),
        (httpx.ConnectError, ConnectError),
    ]
    for httpx_type, ours in mapping:
        if isinstance(exc, httpx_type):
            return ours(str(exc) or httpx_type.__name__)
    return NetworkError(str(exc) or type(exc).__name__)


def error_from_response(response: httpx.Response) -> ServerError:
    """Our exception for an error answer, with the service's code, message and field."""
    status = response.status_code
    code, message, field = f"http_{status}", response.reason_phrase or "error", None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        code = str(error.get("code", code))
        message = str(error.get("message", message))
        field = None if error.get("field") is None else str(error["field"])
    elif response.text:
        message = response.text[:500]
    if status == 401:
        return AuthenticationError(status, code, message, field)
    if status == 429 or status >= 500:
        return ServiceUnavailable(status, code, message, field)
    if 400 <= status < 500:
        return ClientRequestError(status, code, message, field)
    return ServerError(status, code, message, field)


@dataclass(frozen=True)
class _Call:
    """One logical request; ``accept`` lists error statuses returned instead of raised."""

    method: str
    path: str
    json: Any = None
    params: Mapping[str, str | int] | None = None
    accept: frozenset[int] = frozenset()
    retry: bool = True


@dataclass(frozen=True)
class _Step:
    """What to do after an attempt: return ``response``, or raise ``error``, or (``retry``)
    sleep ``delay`` seconds and try again."""

    response: httpx.Response | None = None
    error: OspoClientError | None = None
    retry: bool = False
    delay: float = 0.0


def next_step(
    call: _Call,
    policy: RetryPolicy,
    attempt: int,
    outcome: httpx.Response | httpx.TransportError,
    jitter: float,
    remaining_s: float | None = None,
) -> _Step:
    """The retry decision shared by both clients; ``remaining_s`` is the time left of the
    call's ``max_elapsed_s`` budget (``None``: no budget)."""
    can_retry = call.retry and (policy.max_retries is None or attempt < policy.max_retries)
    if isinstance(outcome, httpx.TransportError):
        error: OspoClientError = transport_error(outcome)
        delay = backoff_delay(policy, attempt, None, jitter)
    else:
        status = outcome.status_code
        if outcome.is_success or status in call.accept:
            return _Step(response=outcome)
        error = error_from_response(outcome)
        if not is_retryable_status(status):
            return _Step(error=error)
        retry_after = parse_retry_after(outcome.headers.get("retry-after"))
        delay = backoff_delay(policy, attempt, retry_after, jitter)
    if not can_retry or (remaining_s is not None and delay >= remaining_s):
        return _Step(error=error)
    return _Step(error=error, retry=True, delay=delay)


def attempt_timeout(timeout: httpx.Timeout, remaining_s: float | None) -> httpx.Timeout:
    """``timeout`` with every phase cut to the time left (at least 1 ms)."""
    if remaining_s is None:
        return timeout
    left = max(remaining_s, 0.001)

    def cut(value: float | None) -> float:
        return left if value is None else min(value, left)

    return httpx.Timeout(
        connect=cut(timeout.connect),
        read=cut(timeout.read),
        write=cut(timeout.write),
        pool=cut(timeout.pool),
    )


def log_retry(call: _Call, attempt: int, step: _Step) -> None:
    logger.warning(
        "%s %s failed (%s); retry %d in %.2f s",
        call.method,
        call.path,
        step.error,
        attempt + 1,
        step.delay,
    )
