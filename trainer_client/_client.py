"""HTTP clients for the ospo service: :class:`AttributionClient` and :class:`AsyncAttributionClient`.

Everything that is not I/O lives in pure functions: the wire format in ``_wire.py`` (request
bodies, answer parsing, batch splitting and merging) and the retry decision in ``_retry.py``.
The two clients are thin twins that differ only in how they send and sleep.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any

import httpx

from ._retry import RetryPolicy, _Call, attempt_timeout, log_retry, next_step
from ._types import (
    AttributeResult,
    Group,
    Options,
    Readiness,
    RetrieverInfo,
    RewardResult,
    SearchHit,
)
from ._wire import (
    _json,
    attribute_body,
    merge_results,
    parse_attribute_result,
    parse_readiness,
    parse_retrievers,
    parse_reward_result,
    parse_search,
    reward_call,
    search_call,
    split_groups,
)

__all__ = [
    "DEFAULT_MAX_GROUPS_PER_REQUEST",
    "DEFAULT_TIMEOUT",
    "AsyncAttributionClient",
    "AttributionClient",
    "RetryPolicy",
]

DEFAULT_TIMEOUT = httpx.Timeout(180.0, connect=10.0)
"""180 s to answer (as OpenRLHF's remote reward model), 10 s to connect."""
DEFAULT_MAX_GROUPS_PER_REQUEST = 64
"""The service's default ``max_groups``; larger batches are split into concurrent chunks."""
USER_AGENT = "ospo-trainer-client/0.1"


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
        clock: Callable[[], float],
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
                max_elapsed_s=policy.max_elapsed_s,
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
        self._clock = clock

    def _remaining(self, started: float) -> float | None:
        """Seconds left of the retry budget of a call that started at ``started``."""
        if self.retry.max_elapsed_s is None:
            return None
        return self.retry.max_elapsed_s - (self._clock() - started)

    def _request_kwargs(self, call: _Call, remaining: float | None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"json": call.json, "params": call.params}
        if remaining is not None:
            kwargs["timeout"] = attempt_timeout(self._timeout, remaining)
        return kwargs

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
        clock: Callable[[], float] = time.monotonic,
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
            clock=clock,
        )
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=self._timeout,
            headers=self._headers,
            transport=transport,
        )

    def _send(self, call: _Call, started: float | None = None) -> httpx.Response:
        """One logical request with retries; ``started`` is when the logical call (all its
        chunks) began, for the ``max_elapsed_s`` budget."""
        started = self._clock() if started is None else started
        attempt = 0
        while True:
            remaining = self._remaining(started)
            outcome: httpx.Response | httpx.TransportError
            try:
                outcome = self._http.request(
                    call.method, self._url(call.path), **self._request_kwargs(call, remaining)
                )
            except httpx.TransportError as exc:
                outcome = exc
            step = next_step(
                call, self.retry, attempt, outcome, self._jitter(), self._remaining(started)
            )
            if step.response is not None:
                return step.response
            assert step.error is not None
            if not step.retry:
                raise step.error from (outcome if isinstance(outcome, Exception) else None)
            log_retry(call, attempt, step)
            self._sleep(step.delay)
            attempt += 1

    def attribute(self, groups: Iterable[Group], options: Options | None = None) -> AttributeResult:
        """Rewards, segment credit and token advantages for GRPO groups (``POST /attribute``).

        More than ``max_groups_per_request`` groups are sent as concurrent chunks and the
        answers reassembled in order (stats summed).
        """
        chunks, calls = self._attribute_calls(groups, options)
        started = self._clock()
        if len(calls) == 1:
            bodies = [_json(self._send(calls[0], started))]
        else:
            with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(calls))) as pool:
                bodies = list(pool.map(lambda c: _json(self._send(c, started)), calls))
        return merge_results(
            [parse_attribute_result(b, chunk) for b, chunk in zip(bodies, chunks, strict=True)]
        )

    def reward(
        self,
        queries: Sequence[str],
        prompts: Sequence[str],
        labels: Sequence[str],
        *,
        retriever: str | None = None,
        k: int | None = None,
        depth: int | None = None,
        query_tag: str | None = None,
    ) -> RewardResult:
        """Scalar rewards in OpenRLHF's remote reward model protocol (``POST /reward``).

        ``retriever``, ``k``, ``depth`` and ``query_tag`` default to the service's; give the
        values your ``/attribute`` options use, so both score the same game."""
        call = reward_call(
            queries, prompts, labels, retriever=retriever, k=k, depth=depth, query_tag=query_tag
        )
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
        clock: Callable[[], float] = time.monotonic,
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
            clock=clock,
        )
        self._sleep = sleep
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=self._timeout,
            headers=self._headers,
            transport=transport,
        )

    async def _send(self, call: _Call, started: float | None = None) -> httpx.Response:
        started = self._clock() if started is None else started
        attempt = 0
        while True:
            remaining = self._remaining(started)
            outcome: httpx.Response | httpx.TransportError
            try:
                outcome = await self._http.request(
                    call.method, self._url(call.path), **self._request_kwargs(call, remaining)
                )
            except httpx.TransportError as exc:
                outcome = exc
            step = next_step(
                call, self.retry, attempt, outcome, self._jitter(), self._remaining(started)
            )
            if step.response is not None:
                return step.response
            assert step.error is not None
            if not step.retry:
                raise step.error from (outcome if isinstance(outcome, Exception) else None)
            log_retry(call, attempt, step)
            await self._sleep(step.delay)
            attempt += 1

    async def attribute(
        self, groups: Iterable[Group], options: Options | None = None
    ) -> AttributeResult:
        """Async :meth:`AttributionClient.attribute`; chunks go out through ``asyncio.gather``."""
        chunks, calls = self._attribute_calls(groups, options)
        limit = asyncio.Semaphore(self.max_concurrency)
        started = self._clock()

        async def send(call: _Call) -> Any:
            async with limit:
                return _json(await self._send(call, started))

        bodies = await asyncio.gather(*(send(c) for c in calls))
        return merge_results(
            [parse_attribute_result(b, chunk) for b, chunk in zip(bodies, chunks, strict=True)]
        )

    async def reward(
        self,
        queries: Sequence[str],
        prompts: Sequence[str],
        labels: Sequence[str],
        *,
        retriever: str | None = None,
        k: int | None = None,
        depth: int | None = None,
        query_tag: str | None = None,
    ) -> RewardResult:
        call = reward_call(
            queries, prompts, labels, retriever=retriever, k=k, depth=depth, query_tag=query_tag
        )
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
