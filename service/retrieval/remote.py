"""The ``remote`` encoder backend: any OpenAI-compatible embeddings endpoint (Text Embeddings
Inference, Infinity, vLLM) serving the retriever's model, typically on a GPU next to the
training job.

``POST {url}/v1/embeddings`` with ``{"model": NAME, "input": [texts], "encoding_format":
"float"}``, answered by ``{"data": [{"index": i, "embedding": [...]}, ...]}``. Texts go in
batches of `batch_size`, at most `concurrency` batches in flight (the server batches across
them). Each attempt has a deadline of `timeout_s`; connection failures, timeouts, 408, 429
and 5xx answers are retried `retries` times with a short exponential backoff; anything else
fails at once. A failure during a request is a BackendError (502, or 504 after a timeout)
naming the server, never a 500.

At start-up `connect` asks ``GET {url}/v1/models`` and refuses (one line) when the server
does not serve the model, and embeds one probe text to learn the dimension; the registry then
checks both against the index manifest, which records the served model name.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np

from service.errors import BackendError
from service.retrieval.backends import REMOTE, EncoderRecord
from service.retrieval.encoder import EncoderLoadError

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 429})
BACKOFF_S = 0.05
_SNIPPET_CHARS = 200


class _Retryable(Exception):
    def __init__(self, detail: str, *, timeout: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.timeout = timeout


def _base_url(url: str) -> str:
    """The server's base URL: a trailing /v1/embeddings or /v1 is accepted and removed."""
    base = url.rstrip("/")
    for suffix in ("/embeddings", "/v1"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    return base


class RemoteEncoder:
    """Embeddings from an OpenAI-compatible server; thread-safe (httpx.Client is)."""

    backend = REMOTE

    def __init__(
        self,
        *,
        name: str,
        url: str,
        model: str | None = None,
        dim: int = 0,
        batch_size: int = 32,
        timeout_s: float = 30.0,
        retries: int = 2,
        concurrency: int = 4,
        api_key: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if batch_size < 1 or concurrency < 1 or retries < 0 or timeout_s <= 0:
            raise ValueError(
                "remote encoder: batch_size and concurrency must be >= 1, retries >= 0, timeout_s > 0"
            )
        self.name = name
        self.model = model or name
        self.url = _base_url(url)
        self.dim = dim
        self.batch_size = batch_size
        self.timeout_s = timeout_s
        self.retries = retries
        self.concurrency = concurrency
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            base_url=self.url,
            timeout=httpx.Timeout(timeout_s),
            headers=headers,
            transport=transport,
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="ospo-embed")

    @classmethod
    def connect(
        cls,
        *,
        name: str,
        url: str,
        model: str | None = None,
        batch_size: int = 32,
        timeout_s: float = 30.0,
        retries: int = 2,
        concurrency: int = 4,
        api_key_env: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> RemoteEncoder:
        """A checked encoder: the server answers, serves `model`, and returns vectors."""
        api_key = os.environ.get(api_key_env) if api_key_env else None
        if api_key_env and not api_key:
            raise EncoderLoadError(
                f"remote encoder {name!r}: the API key variable {api_key_env} is not set"
            )
        encoder = cls(
            name=name,
            url=url,
            model=model,
            batch_size=batch_size,
            timeout_s=timeout_s,
            retries=retries,
            concurrency=concurrency,
            api_key=api_key,
            transport=transport,
        )
        try:
            served = encoder.served_models()
            if served and encoder.model not in served:
                raise EncoderLoadError(
                    f"embedding server {encoder.url} serves {', '.join(sorted(served))}, not {encoder.model}"
                )
            probe = encoder._post_batch(["dimension probe"])
        except BackendError as exc:
            encoder.close()
            raise EncoderLoadError(f"remote encoder {name!r}: {exc.message}") from None
        except EncoderLoadError:
            encoder.close()
            raise
        encoder.dim = int(probe.shape[1])
        logger.info(
            "remote encoder %s: %s at %s (dim %d)", name, encoder.model, encoder.url, encoder.dim
        )
        return encoder

    def served_models(self) -> set[str]:
        """Model ids the server lists at /v1/models (empty when it has no such route)."""
        response = self._request("GET", "/v1/models", None)
        if response.status_code == 404:
            return set()
        body = self._json(response)
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise BackendError(f"embedding server {self.url}: /v1/models has no data list")
        return {str(item.get("id")) for item in data if isinstance(item, dict) and "id" in item}

    def encode(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Unit vectors, rows in input order (`batch_size` is the engine's; the server's batch
        size is this encoder's own `batch_size`)."""
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        batches = [
            list(texts[start : start + self.batch_size])
            for start in range(0, len(texts), self.batch_size)
        ]
        if len(batches) == 1:
            parts = [self._post_batch(batches[0])]
        else:
            parts = list(self._pool.map(self._post_batch, batches))
        vectors = np.concatenate(parts).astype(np.float32, copy=False)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        np.divide(vectors, norms, out=vectors, where=norms > 0)
        return np.ascontiguousarray(vectors)

    def _post_batch(self, texts: list[str]) -> np.ndarray:
        # Some servers reject empty strings; an empty text gets the embedding of a space,
        # which is what their tokenizers reduce it to anyway ([CLS] [SEP]).
        payload = {
            "model": self.model,
            "input": [text if text else " " for text in texts],
            "encoding_format": "float",
        }
        body = self._json(self._request("POST", "/v1/embeddings", payload))
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list) or len(data) != len(texts):
            got = len(data) if isinstance(data, list) else "no"
            raise BackendError(
                f"embedding server {self.url}: asked for {len(texts)} embeddings, got {got}"
            )
        try:
            ordered = sorted(data, key=lambda item: int(item.get("index", 0)))
            vectors = np.asarray([item["embedding"] for item in ordered], dtype=np.float32)
        except (TypeError, KeyError, ValueError):
            raise BackendError(f"embedding server {self.url}: malformed embeddings") from None
        if vectors.ndim != 2 or (self.dim and vectors.shape[1] != self.dim):
            raise BackendError(
                f"embedding server {self.url}: embeddings of shape {vectors.shape}, expected dim {self.dim}"
            )
        if not np.all(np.isfinite(vectors)):
            raise BackendError(f"embedding server {self.url}: non-finite embeddings")
        return vectors

    def _request(self, method: str, path: str, payload: Any) -> httpx.Response:
        last: _Retryable | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(BACKOFF_S * 2 ** (attempt - 1))
            try:
                return self._attempt(method, path, payload)
            except _Retryable as failure:
                last = failure
                logger.warning(
                    "embedding server %s, attempt %d/%d: %s",
                    self.url,
                    attempt + 1,
                    self.retries + 1,
                    failure.detail,
                )
        assert last is not None
        tries = self.retries + 1
        raise BackendError(
            f"embedding server {self.url} failed after {tries} attempt{'s' if tries > 1 else ''}: {last.detail}",
            timeout=last.timeout,
        )

    def _attempt(self, method: str, path: str, payload: Any) -> httpx.Response:
        try:
            response = self._client.request(method, path, json=payload)
        except httpx.TimeoutException:
            raise _Retryable(f"no answer within {self.timeout_s:g} s", timeout=True) from None
        except httpx.TransportError as exc:
            raise _Retryable(f"{type(exc).__name__}: {exc}") from None
        status = response.status_code
        if status in RETRY_STATUSES or status >= 500:
            raise _Retryable(f"HTTP {status}: {response.text[:_SNIPPET_CHARS]!r}")
        if status >= 400 and not (status == 404 and path == "/v1/models"):
            raise BackendError(
                f"embedding server {self.url} refused {path} with HTTP {status}: {response.text[:_SNIPPET_CHARS]!r}"
            )
        return response

    def _json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise BackendError(
                f"embedding server {self.url}: answer is not JSON: {response.text[:_SNIPPET_CHARS]!r}"
            ) from None

    def index_record(self) -> EncoderRecord:
        return EncoderRecord(backend=REMOTE, details={"remote_model": self.model})

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()

    def __repr__(self) -> str:
        return f"RemoteEncoder({self.name!r}, model={self.model!r}, url={self.url!r})"


__all__ = ["RemoteEncoder"]
