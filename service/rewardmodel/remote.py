"""A remote reward model speaking OpenRLHF's protocol: `POST url` with
`{"query": [prompt + response, ...], "prompts": [...], "labels": [...]}`, answered by
`{"rewards": [...]}` (or `{"scores": [...]}`).

All of a request's distinct partial responses are sent in batches of `batch_size`, at most
`concurrency` batches at a time. Each attempt has a total deadline of `timeout_s`; connection
failures, timeouts, 408, 429 and 5xx answers are retried `retries` times with a short
exponential backoff. Anything else (4xx, a malformed answer) fails at once.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np

from service.rewardmodel.base import RewardModelError
from service.rewardmodel.spec import DEFAULT_REMOTE_VERSION, RewardModelSpec

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 429})
BACKOFF_S = 0.05
_SNIPPET_CHARS = 200


class _Retryable(Exception):
    """One failed attempt that may succeed when retried."""

    def __init__(self, detail: str, *, timeout: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.timeout = timeout


class RemoteRewardModel:
    """OpenRLHF remote reward model client (one httpx connection pool per event loop)."""

    backend = "remote"

    def __init__(self, spec: RewardModelSpec, *, transport: httpx.AsyncBaseTransport | None = None):
        if spec.url is None:
            raise ValueError(f"reward model {spec.name!r} has no url")
        self.spec = spec
        self.url: str = spec.url
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def version(self) -> str:
        return self.spec.version or DEFAULT_REMOTE_VERSION

    @property
    def identity(self) -> str:
        return self.url

    async def score(
        self, prompts: Sequence[str], responses: Sequence[str], labels: Sequence[str]
    ) -> np.ndarray:
        count = len(responses)
        if not (len(prompts) == len(labels) == count):
            raise ValueError("prompts, responses and labels must have the same length")
        if count == 0:
            return np.zeros(0, dtype=np.float64)
        size = self.spec.batch_size
        gate = asyncio.Semaphore(self.spec.concurrency)

        async def one_batch(start: int) -> list[float]:
            async with gate:
                return await self._post_batch(
                    list(prompts[start : start + size]),
                    list(responses[start : start + size]),
                    list(labels[start : start + size]),
                )

        tasks = [asyncio.ensure_future(one_batch(start)) for start in range(0, count, size)]
        try:
            batches = await asyncio.gather(*tasks)
        except BaseException:
            # The first failure decides the request; stop the batches still in flight.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return np.asarray([score for batch in batches for score in batch], dtype=np.float64)

    async def aclose(self) -> None:
        client, self._client, self._loop = self._client, None, None
        if client is not None:
            try:
                await client.aclose()
            except RuntimeError:  # its event loop is gone (a test's asyncio.run ended)
                pass

    # ------------------------------------------------------------------ one batch

    def _http(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            # Pooled connections belong to the loop that opened them.
            self._client = httpx.AsyncClient(
                transport=self._transport,
                limits=httpx.Limits(max_connections=max(self.spec.concurrency, 1) * 2),
                timeout=httpx.Timeout(self.spec.timeout_s),
            )
            self._loop = loop
        return self._client

    def _fail(self, detail: str, *, timeout: bool = False) -> RewardModelError:
        return RewardModelError(
            self.name, f"reward model {self.name!r} ({self.url}): {detail}", timeout=timeout
        )

    async def _post_batch(
        self, prompts: list[str], responses: list[str], labels: list[str]
    ) -> list[float]:
        body = {
            "query": [
                prompt + response for prompt, response in zip(prompts, responses, strict=True)
            ],
            "prompts": prompts,
            "labels": labels,
        }
        attempts = self.spec.retries + 1
        last = _Retryable("no attempt made")
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(BACKOFF_S * 2 ** (attempt - 1))
            try:
                return await self._attempt(body, len(responses))
            except _Retryable as failure:
                last = failure
                logger.warning(
                    "reward model %s attempt %d/%d failed: %s",
                    self.name,
                    attempt + 1,
                    attempts,
                    failure.detail,
                )
        tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
        raise self._fail(f"{last.detail} ({tries})", timeout=last.timeout)

    async def _attempt(self, body: dict[str, Any], expected: int) -> list[float]:
        timeout = self.spec.timeout_s
        try:
            response = await asyncio.wait_for(self._http().post(self.url, json=body), timeout)
        except (asyncio.TimeoutError, httpx.TimeoutException):
            raise _Retryable(f"no answer within timeout_s={timeout:g}", timeout=True) from None
        except httpx.HTTPError as exc:
            raise _Retryable(f"request failed: {type(exc).__name__}: {exc}") from None
        status = response.status_code
        if status in RETRY_STATUSES or status >= 500:
            raise _Retryable(f"answered HTTP {status}: {_snippet(response)}")
        if status >= 400:
            raise self._fail(f"answered HTTP {status}: {_snippet(response)}")
        return self._parse(response, expected)

    def _parse(self, response: httpx.Response, expected: int) -> list[float]:
        try:
            payload = response.json()
        except ValueError:
            raise self._fail(f"answered non-JSON: {_snippet(response)}") from None
        scores = None
        if isinstance(payload, dict):
            scores = payload.get("rewards")
            if scores is None:
                scores = payload.get("scores")
        if not isinstance(scores, list):
            raise self._fail("the answer has no 'rewards' (or 'scores') list")
        if len(scores) != expected:
            raise self._fail(f"answered {len(scores)} rewards for {expected} queries")
        values: list[float] = []
        for position, score in enumerate(scores):
            if isinstance(score, list) and len(score) == 1:
                score = score[0]
            if isinstance(score, bool) or not isinstance(score, int | float):
                raise self._fail(f"rewards[{position}] is not a number: {score!r}")
            if not math.isfinite(score):
                raise self._fail(f"rewards[{position}] is not finite: {score!r}")
            values.append(float(score))
        return values


def _snippet(response: httpx.Response) -> str:
    text = response.text.strip().replace("\n", " ")
    if len(text) > _SNIPPET_CHARS:
        text = text[:_SNIPPET_CHARS] + "…"
    return text or "(empty body)"


__all__ = ["RemoteRewardModel"]
