"""HTTP clients for the ospo service: :class:`AttributionClient` and :class:`AsyncAttributionClient`.

Everything that is not I/O is a pure function here (request bodies, answer parsing, batch
splitting and merging, the retry decision), so the two clients are thin twins that differ
only in how they send and sleep. Every request is deterministic on the service side, so
retrying any of them (timeouts and 5xx included) is safe.
"""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import logging
import random
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

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
    ResponseFormatError,
    ServerError,
    ServiceUnavailable,
    TransportError,
    WriteTimeout,
)
from ._types import (
    UNSET,
    AttributeResult,
    Coalition,
    Group,
    GroupResult,
    ModelInfo,
    Options,
    Readiness,
    Response,
    ResponseResult,
    RetrieverInfo,
    RewardResult,
    SearchHit,
    Segment,
    Stats,
)

__all__ = [
    "DEFAULT_MAX_GROUPS_PER_REQUEST",
    "DEFAULT_TIMEOUT",
    "AsyncAttributionClient",
    "AttributionClient",
    "RetryPolicy",
]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = httpx.Timeout(180.0, connect=10.0)
"""180 s to answer (as OpenRLHF's remote reward model), 10 s to connect."""
DEFAULT_MAX_GROUPS_PER_REQUEST = 64
"""The service's default ``max_groups``; larger batches are split into concurrent chunks."""
USER_AGENT = "ospo-trainer-client/0.1"

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before retrying.

    Attempt ``a`` (0-based) that failed waits ``min(backoff_max, backoff_base * 2**a)``
    scaled by a jitter factor in [0.5, 1); a ``Retry-After`` header replaces that with the
    server's figure (capped at ``retry_after_max``). At most ``max_retries`` retries follow
    the first attempt.
    """

    max_retries: int = 5
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    retry_after_max: float = 120.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if self.backoff_base < 0 or self.backoff_max < 0 or self.retry_after_max < 0:
            raise ValueError("backoff times must be >= 0")


# --------------------------------------------------------------------------- retry decision

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


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
    ceiling = min(policy.backoff_max, policy.backoff_base * (2.0**attempt))
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
) -> _Step:
    """The retry decision shared by both clients."""
    can_retry = call.retry and attempt < policy.max_retries
    if isinstance(outcome, httpx.TransportError):
        error: OspoClientError = transport_error(outcome)
        if not can_retry:
            return _Step(error=error)
        return _Step(error=error, retry=True, delay=backoff_delay(policy, attempt, None, jitter))
    status = outcome.status_code
    if outcome.is_success or status in call.accept:
        return _Step(response=outcome)
    error = error_from_response(outcome)
    if not (can_retry and is_retryable_status(status)):
        return _Step(error=error)
    retry_after = parse_retry_after(outcome.headers.get("retry-after"))
    return _Step(error=error, retry=True, delay=backoff_delay(policy, attempt, retry_after, jitter))


def _log_retry(call: _Call, attempt: int, step: _Step) -> None:
    logger.warning(
        "%s %s failed (%s); retry %d in %.2f s",
        call.method,
        call.path,
        step.error,
        attempt + 1,
        step.delay,
    )


# --------------------------------------------------------------------------- request bodies


def response_to_json(response: Response) -> dict[str, Any]:
    body: dict[str, Any] = {"text": response.text}
    if response.span is not None:
        body["span"] = [int(response.span[0]), int(response.span[1])]
    if response.token_offsets is not None:
        body["token_offsets"] = [[int(s), int(e)] for s, e in response.token_offsets]
    if response.reward is not None:
        body["reward"] = float(response.reward)
    return body


def group_to_json(group: Group) -> dict[str, Any]:
    target: dict[str, Any]
    if group.target.query_id is not None:
        target = {"query_id": group.target.query_id}
    elif group.target.reward_model is not None:
        target = {"reward_model": group.target.reward_model}
        if group.target.label is not None:
            target["label"] = group.target.label
    else:
        target = {"relevant": {k: float(v) for k, v in (group.target.relevant or {}).items()}}
    body: dict[str, Any] = {
        "id": group.id,
        "target": target,
        "responses": [response_to_json(r) for r in group.responses],
    }
    if group.pool is not None:
        body["pool"] = list(group.pool)
    if group.prompt is not None:
        body["prompt"] = group.prompt
    return body


def options_to_json(options: Options | None) -> dict[str, Any]:
    if options is None:
        return {}
    body: dict[str, Any] = {}
    for name in Options.__dataclass_fields__:
        value = getattr(options, name)
        if name == "clip":
            if value is not UNSET:
                body["clip"] = value
        elif value is not None:
            body[name] = value
    return body


def attribute_body(groups: Sequence[Group], options: Options | None) -> dict[str, Any]:
    """The JSON body of ``POST /attribute``."""
    return {"groups": [group_to_json(g) for g in groups], "options": options_to_json(options)}


def split_groups(groups: Sequence[Group], max_groups: int) -> list[list[Group]]:
    """Consecutive chunks of at most ``max_groups`` groups, in order."""
    if max_groups < 1:
        raise ValueError("max_groups_per_request must be >= 1")
    return [list(groups[i : i + max_groups]) for i in range(0, len(groups), max_groups)]


# --------------------------------------------------------------------------- answer parsing


def _parse(kind: str, parse: Callable[[], T]) -> T:
    try:
        return parse()
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise ResponseFormatError(f"unexpected {kind} answer: {exc!r}") from exc


def _segment(raw: Mapping[str, Any]) -> Segment:
    return Segment(
        start=int(raw["start"]),
        end=int(raw["end"]),
        text=str(raw["text"]),
        value=float(raw["value"]),
        credit=float(raw["credit"]),
    )


def _response_result(raw: Mapping[str, Any]) -> ResponseResult:
    token_advantages = raw.get("token_advantages")
    coalitions = raw.get("coalitions")
    return ResponseResult(
        reward=float(raw["reward"]),
        advantage=float(raw["advantage"]),
        segments=tuple(_segment(s) for s in raw.get("segments") or ()),
        token_advantages=None
        if token_advantages is None
        else tuple(float(a) for a in token_advantages),
        coalitions=None
        if coalitions is None
        else tuple(
            Coalition(
                members=tuple(int(m) for m in c["members"]),
                query=str(c["query"]),
                value=float(c["value"]),
            )
            for c in coalitions
        ),
    )


def _stats(raw: Mapping[str, Any]) -> Stats:
    known = ("coalitions", "unique_queries", "cache_hits", "encoded", "timings_ms")
    return Stats(
        coalitions=int(raw.get("coalitions", 0)),
        unique_queries=int(raw.get("unique_queries", 0)),
        cache_hits=int(raw.get("cache_hits", 0)),
        encoded=int(raw.get("encoded", 0)),
        timings_ms={str(k): float(v) for k, v in (raw.get("timings_ms") or {}).items()},
        extra={k: v for k, v in raw.items() if k not in known},
    )


def parse_attribute_result(body: Any, sent: Sequence[Group] | None = None) -> AttributeResult:
    """Parse a ``POST /attribute`` answer; with ``sent``, check it matches the request."""

    def parse() -> AttributeResult:
        groups = tuple(
            GroupResult(
                id=str(g["id"]), responses=tuple(_response_result(r) for r in g["responses"])
            )
            for g in body["groups"]
        )
        model = body["model"]
        return AttributeResult(
            groups=groups,
            stats=_stats(body.get("stats") or {}),
            model=ModelInfo(
                retriever=str(model["retriever"]),
                encoder=str(model["encoder"]),
                index_version=str(model["index_version"]),
            ),
        )

    result = _parse("/attribute", parse)
    if sent is not None:
        _check_matches(result, sent)
    return result


def _check_matches(result: AttributeResult, sent: Sequence[Group]) -> None:
    if len(result.groups) != len(sent):
        raise ResponseFormatError(f"sent {len(sent)} groups, got {len(result.groups)} back")
    for group_result, group in zip(result.groups, sent, strict=True):
        if group_result.id != group.id:
            raise ResponseFormatError(f"group {group.id!r} answered as {group_result.id!r}")
        if len(group_result.responses) != len(group.responses):
            raise ResponseFormatError(
                f"group {group.id!r}: sent {len(group.responses)} responses, "
                f"got {len(group_result.responses)}"
            )
        for j, (res, req) in enumerate(zip(group_result.responses, group.responses, strict=True)):
            if req.token_offsets is None:
                continue
            got = None if res.token_advantages is None else len(res.token_advantages)
            if got != len(req.token_offsets):
                raise ResponseFormatError(
                    f"group {group.id!r} response {j}: sent {len(req.token_offsets)} "
                    f"token offsets, got {got} token advantages"
                )


def merge_stats(parts: Sequence[Stats]) -> Stats:
    """Counters and timings summed over chunks (timings: total work, not wall time)."""
    timings: dict[str, float] = {}
    extra: dict[str, Any] = {}
    for part in parts:
        for key, ms in part.timings_ms.items():
            timings[key] = timings.get(key, 0.0) + ms
        for key, value in part.extra.items():
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
            if numeric and isinstance(extra.get(key), (int, float)):
                extra[key] = extra[key] + value
            else:
                extra.setdefault(key, value)
    return Stats(
        coalitions=sum(p.coalitions for p in parts),
        unique_queries=sum(p.unique_queries for p in parts),
        cache_hits=sum(p.cache_hits for p in parts),
        encoded=sum(p.encoded for p in parts),
        timings_ms=timings,
        extra=extra,
    )


def merge_results(parts: Sequence[AttributeResult]) -> AttributeResult:
    """One result from the chunks' results, groups in chunk order."""
    if not parts:
        raise ValueError("nothing to merge")
    if len(parts) == 1:
        return parts[0]
    models = {p.model for p in parts}
    if len(models) > 1:
        # The index was swapped between chunks; the values are still each chunk's own.
        logger.warning("chunks of one batch were answered by different models: %s", models)
    return AttributeResult(
        groups=tuple(g for p in parts for g in p.groups),
        stats=merge_stats([p.stats for p in parts]),
        model=parts[0].model,
    )


def reward_body(
    queries: Sequence[str], prompts: Sequence[str], labels: Sequence[str]
) -> dict[str, Any]:
    if not len(queries) == len(prompts) == len(labels):
        raise ValueError("queries, prompts and labels must have the same length")
    return {"query": list(queries), "prompts": list(prompts), "labels": list(labels)}


def parse_reward_result(body: Any) -> RewardResult:
    def parse() -> RewardResult:
        rewards = tuple(float(r) for r in body["rewards"])
        scores = tuple(float(s) for s in body.get("scores", rewards))
        return RewardResult(rewards=rewards, scores=scores, extra_logs=body.get("extra_logs") or {})

    return _parse("/reward", parse)


def parse_retrievers(body: Any) -> list[RetrieverInfo]:
    def parse() -> list[RetrieverInfo]:
        return [
            RetrieverInfo(
                name=str(r["name"]),
                encoder=str(r["encoder"]),
                dim=int(r["dim"]),
                index=str(r["index"]),
                size=int(r["size"]),
                version=str(r["version"]),
            )
            for r in body["retrievers"]
        ]

    return _parse("/v1/retrievers", parse)


def parse_search(body: Any) -> list[SearchHit]:
    def parse() -> list[SearchHit]:
        return [
            SearchHit(id=str(h["id"]), title=str(h.get("title", "")), score=float(h["score"]))
            for h in body["results"]
        ]

    return _parse("search", parse)


def parse_readiness(response: httpx.Response) -> Readiness:
    def parse() -> Readiness:
        body = response.json()
        cache = body.get("cache") or {}
        degraded = cache.get("degraded")
        return Readiness(
            ready=response.status_code == 200,
            status=str(body.get("status", "ready" if response.status_code == 200 else "")),
            cache_backend=None if cache.get("backend") is None else str(cache["backend"]),
            cache_degraded=None if degraded is None else bool(degraded),
        )

    return _parse("/readyz", parse)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise ResponseFormatError(f"answer to {response.request.url.path} is not JSON") from exc


def search_call(retriever: str, q: str, k: int) -> _Call:
    path = f"/v1/retrievers/{urllib.parse.quote(retriever, safe='')}/search"
    return _Call("GET", path, params={"q": q, "k": k})


# --------------------------------------------------------------------------- the clients


class _BaseClient:
    """Configuration shared by both clients; no I/O."""

    def __init__(
        self,
        base_url: str | Sequence[str],
        *,
        api_key: str | None,
        timeout: httpx.Timeout | float | None,
        retry: RetryPolicy | None,
        max_retries: int | None,
        max_groups_per_request: int,
        max_concurrency: int,
        headers: Mapping[str, str] | None,
        jitter: Callable[[], float] | None,
    ) -> None:
        if max_groups_per_request < 1:
            raise ValueError("max_groups_per_request must be >= 1")
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")
        policy = retry or RetryPolicy()
        if max_retries is not None:
            policy = RetryPolicy(
                max_retries=max_retries,
                backoff_base=policy.backoff_base,
                backoff_max=policy.backoff_max,
                retry_after_max=policy.retry_after_max,
            )
        urls = [base_url] if isinstance(base_url, str) else list(base_url)
        if not urls:
            raise ValueError("base_url needs at least one URL")
        # Several replicas: each attempt goes to the next one, so a retry after a replica
        # dies lands on another (requests are deterministic, so any replica may answer).
        self.base_urls = [url.rstrip("/") for url in urls]
        self.base_url = self.base_urls[0]
        self._turn = itertools.count()
        self.retry = policy
        self.max_groups_per_request = max_groups_per_request
        self.max_concurrency = max_concurrency
        self._timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self._headers = {"User-Agent": USER_AGENT, **(headers or {})}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._jitter = jitter or random.random

    def _url(self, path: str) -> str:
        if len(self.base_urls) == 1:
            return path  # relative to the httpx client's base_url
        return self.base_urls[next(self._turn) % len(self.base_urls)] + path

    def _attribute_calls(
        self, groups: Iterable[Group], options: Options | None
    ) -> tuple[list[list[Group]], list[_Call]]:
        chunks = split_groups(list(groups), self.max_groups_per_request)
        if not chunks:
            raise ValueError("attribute() needs at least one group")
        calls = [_Call("POST", "/attribute", json=attribute_body(c, options)) for c in chunks]
        return chunks, calls


class AttributionClient(_BaseClient):
    """Synchronous client. Thread-safe; use as a context manager or call :meth:`close`.

    >>> with AttributionClient("http://127.0.0.1:8000") as client:  # doctest: +SKIP
    ...     result = client.attribute([Group("g0", Target(query_id="demo-0001"), [Response("…")])])
    """

    def __init__(
        self,
        base_url: str | Sequence[str] = "http://127.0.0.1:8000",
        *,
        api_key: str | None = None,
        timeout: httpx.Timeout | float | None = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        max_retries: int | None = None,
        max_groups_per_request: int = DEFAULT_MAX_GROUPS_PER_REQUEST,
        max_concurrency: int = 4,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(
            base_url,
            api_key=api_key,
            timeout=timeout,
            retry=retry,
            max_retries=max_retries,
            max_groups_per_request=max_groups_per_request,
            max_concurrency=max_concurrency,
            headers=headers,
            jitter=jitter,
        )
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=self._timeout,
            headers=self._headers,
            transport=transport,
        )

    def _send(self, call: _Call) -> httpx.Response:
        attempt = 0
        while True:
            outcome: httpx.Response | httpx.TransportError
            try:
                outcome = self._http.request(
                    call.method, self._url(call.path), json=call.json, params=call.params
                )
            except httpx.TransportError as exc:
                outcome = exc
            step = next_step(call, self.retry, attempt, outcome, self._jitter())
            if step.response is not None:
                return step.response
            assert step.error is not None
            if not step.retry:
                raise step.error from (outcome if isinstance(outcome, Exception) else None)
            _log_retry(call, attempt, step)
            self._sleep(step.delay)
            attempt += 1

    def attribute(self, groups: Iterable[Group], options: Options | None = None) -> AttributeResult:
        """Rewards, segment credit and token advantages for GRPO groups (``POST /attribute``).

        More than ``max_groups_per_request`` groups are sent as concurrent chunks and the
        answers reassembled in order (stats summed).
        """
        chunks, calls = self._attribute_calls(groups, options)
        if len(calls) == 1:
            bodies = [_json(self._send(calls[0]))]
        else:
            with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(calls))) as pool:
                bodies = list(pool.map(lambda c: _json(self._send(c)), calls))
        return merge_results(
            [parse_attribute_result(b, chunk) for b, chunk in zip(bodies, chunks, strict=True)]
        )

    def reward(
        self, queries: Sequence[str], prompts: Sequence[str], labels: Sequence[str]
    ) -> RewardResult:
        """Scalar rewards in OpenRLHF's remote reward model protocol (``POST /reward``)."""
        call = _Call("POST", "/reward", json=reward_body(queries, prompts, labels))
        return parse_reward_result(_json(self._send(call)))

    def retrievers(self) -> list[RetrieverInfo]:
        return parse_retrievers(_json(self._send(_Call("GET", "/v1/retrievers"))))

    def search(self, retriever: str, q: str, k: int = 10) -> list[SearchHit]:
        return parse_search(_json(self._send(search_call(retriever, q, k))))

    def healthz(self) -> bool:
        """True when the process answers ``/healthz`` (no retries)."""
        response = self._send(_Call("GET", "/healthz", retry=False))
        return response.is_success

    def readyz(self) -> Readiness:
        """Readiness (``/readyz``); a 503 "not ready" is returned, not raised (no retries)."""
        return parse_readiness(
            self._send(_Call("GET", "/readyz", accept=frozenset({503}), retry=False))
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AttributionClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncAttributionClient(_BaseClient):
    """Asynchronous twin of :class:`AttributionClient`; use ``async with`` or :meth:`aclose`."""

    def __init__(
        self,
        base_url: str | Sequence[str] = "http://127.0.0.1:8000",
        *,
        api_key: str | None = None,
        timeout: httpx.Timeout | float | None = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        max_retries: int | None = None,
        max_groups_per_request: int = DEFAULT_MAX_GROUPS_PER_REQUEST,
        max_concurrency: int = 4,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(
            base_url,
            api_key=api_key,
            timeout=timeout,
            retry=retry,
            max_retries=max_retries,
            max_groups_per_request=max_groups_per_request,
            max_concurrency=max_concurrency,
            headers=headers,
            jitter=jitter,
        )
        self._sleep = sleep
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=self._timeout,
            headers=self._headers,
            transport=transport,
        )

    async def _send(self, call: _Call) -> httpx.Response:
        attempt = 0
        while True:
            outcome: httpx.Response | httpx.TransportError
            try:
                outcome = await self._http.request(
                    call.method, self._url(call.path), json=call.json, params=call.params
                )
            except httpx.TransportError as exc:
                outcome = exc
            step = next_step(call, self.retry, attempt, outcome, self._jitter())
            if step.response is not None:
                return step.response
            assert step.error is not None
            if not step.retry:
                raise step.error from (outcome if isinstance(outcome, Exception) else None)
            _log_retry(call, attempt, step)
            await self._sleep(step.delay)
            attempt += 1

    async def attribute(
        self, groups: Iterable[Group], options: Options | None = None
    ) -> AttributeResult:
        """Async :meth:`AttributionClient.attribute`; chunks go out through ``asyncio.gather``."""
        chunks, calls = self._attribute_calls(groups, options)
        limit = asyncio.Semaphore(self.max_concurrency)

        async def send(call: _Call) -> Any:
            async with limit:
                return _json(await self._send(call))

        bodies = await asyncio.gather(*(send(c) for c in calls))
        return merge_results(
            [parse_attribute_result(b, chunk) for b, chunk in zip(bodies, chunks, strict=True)]
        )

    async def reward(
        self, queries: Sequence[str], prompts: Sequence[str], labels: Sequence[str]
    ) -> RewardResult:
        call = _Call("POST", "/reward", json=reward_body(queries, prompts, labels))
        return parse_reward_result(_json(await self._send(call)))

    async def retrievers(self) -> list[RetrieverInfo]:
        return parse_retrievers(_json(await self._send(_Call("GET", "/v1/retrievers"))))

    async def search(self, retriever: str, q: str, k: int = 10) -> list[SearchHit]:
        return parse_search(_json(await self._send(search_call(retriever, q, k))))

    async def healthz(self) -> bool:
        response = await self._send(_Call("GET", "/healthz", retry=False))
        return response.is_success

    async def readyz(self) -> Readiness:
        call = _Call("GET", "/readyz", accept=frozenset({503}), retry=False)
        return parse_readiness(await self._send(call))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncAttributionClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
