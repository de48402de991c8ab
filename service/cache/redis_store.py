"""The Redis score cache, which degrades to an in-process LRU and recovers by itself.

A trainer step blocks on the service, so Redis must never stall or fail a request: every
Redis error is caught, the in-process fallback answers, and Redis is left alone until
`retry_interval_s` has passed. Then one call probes it again; when it answers, the cache is
back on Redis. Values are written through to the fallback, so it already holds what this
process computed or read when Redis goes away.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.retry import Retry

from service.cache.memory_store import MemoryScoreCache

logger = logging.getLogger(__name__)

# Long enough that a busy pool never pays for it; catches connections that died while idle.
_HEALTH_CHECK_INTERVAL_S = 30
# Errors that mean "Redis is not usable now". OSError covers socket errors redis-py lets through.
_BACKEND_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError)


def redact_url(url: str) -> str:
    """`url` without credentials, for logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _decode(raw: bytes | str | None) -> float | None:
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        return None


class RedisScoreCache:
    """Scores in Redis (one MGET per read, one pipeline per write), with an LRU fallback."""

    backend = "redis"

    def __init__(
        self,
        url: str,
        ttl_s: float | None,
        timeout_s: float,
        retry_interval_s: float,
        fallback: MemoryScoreCache,
        on_error: Callable[[str], None] | None = None,
        *,
        max_connections: int = 64,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if retry_interval_s < 0:
            raise ValueError(f"retry_interval_s must be >= 0, got {retry_interval_s}")
        if ttl_s is not None and ttl_s <= 0:
            raise ValueError(f"ttl_s must be > 0 or None, got {ttl_s}")
        self.url = url
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self.retry_interval_s = retry_interval_s
        self.fallback = fallback
        self._on_error = on_error
        self._where = redact_url(url)
        self._pool = redis.ConnectionPool.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            health_check_interval=_HEALTH_CHECK_INTERVAL_S,
            max_connections=max_connections,
            # RESP2 needs no HELLO round trip when a connection opens.
            protocol=2,
            # One immediate retry on a broken connection (a pooled socket that outlived a
            # Redis restart) reconnects; a timeout is never retried, so a stalled Redis
            # costs at most one `timeout_s` per call.
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )
        self._client = redis.Redis(connection_pool=self._pool)
        self._lock = threading.Lock()
        self._degraded = False
        self._retry_at = 0.0
        self._hits = 0
        self._misses = 0
        self._errors = 0

    @property
    def degraded(self) -> bool:
        return self._degraded

    def get_many(self, keys: Sequence[str]) -> list[float | None]:
        if not keys:
            return []
        values: list[float | None] | None = None
        route = self._route()
        if route is not None:
            try:
                raw = self._client.mget(list(keys))
            except _BACKEND_ERRORS as exc:
                self._failed("get", exc)
            else:
                self._succeeded(probe=route)
                values = [_decode(item) for item in raw]
                self._fill_from_fallback(keys, values)
        if values is None:
            values = self.fallback.get_many(keys)
        hits = sum(value is not None for value in values)
        with self._lock:
            self._hits += hits
            self._misses += len(values) - hits
        return values

    def set_many(self, items: Mapping[str, float]) -> None:
        if not items:
            return
        self.fallback.set_many(items)
        route = self._route()
        if route is None:
            return
        px = None if self.ttl_s is None else max(1, round(self.ttl_s * 1000))
        try:
            with self._client.pipeline(transaction=False) as pipe:
                for key, value in items.items():
                    # repr() of a float is the shortest text that parses back to the same bits.
                    pipe.set(key, repr(float(value)), px=px)
                pipe.execute()
        except _BACKEND_ERRORS as exc:
            self._failed("set", exc)
        else:
            self._succeeded(probe=route)

    def ping(self) -> bool:
        """Whether Redis answers now; does not change `degraded` (the next call will)."""
        try:
            return bool(self._client.ping())
        except _BACKEND_ERRORS:
            return False

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"hits": self._hits, "misses": self._misses, "errors": self._errors}

    def close(self) -> None:
        self._pool.disconnect()

    def _route(self) -> bool | None:
        """None: use the fallback only. False: use Redis. True: use Redis as the probe that
        decides whether a degraded cache is back."""
        if not self._degraded:
            return False
        with self._lock:
            if not self._degraded:
                return False
            now = time.monotonic()
            if now < self._retry_at:
                return None
            # Only this call probes; the others stay on the fallback until it has answered.
            self._retry_at = now + self.retry_interval_s
        # Sockets pooled before the outage point at a dead server; start the probe fresh.
        self._pool.disconnect(inuse_connections=False)
        return True

    def _succeeded(self, *, probe: bool) -> None:
        # A call that started before the outage and finished late says nothing about now;
        # only a probe may end an outage.
        if not probe:
            return
        with self._lock:
            was_degraded = self._degraded
            self._degraded = False
        if was_degraded:
            logger.info("Redis cache at %s is back; leaving the in-process fallback", self._where)

    def _failed(self, operation: str, exc: BaseException) -> None:
        with self._lock:
            self._errors += 1
            starts_outage = not self._degraded
            self._degraded = True
            self._retry_at = time.monotonic() + self.retry_interval_s
        if starts_outage:
            logger.warning(
                "Redis cache at %s failed (%s during %s: %s); serving from the in-process "
                "cache and retrying Redis every %.1fs",
                self._where,
                type(exc).__name__,
                operation,
                exc,
                self.retry_interval_s,
            )
            self._pool.disconnect(inuse_connections=False)
        else:
            logger.debug("Redis cache still failing (%s during %s)", type(exc).__name__, operation)
        if self._on_error is not None:
            try:
                self._on_error(operation)
            except Exception:
                logger.exception("Redis cache on_error callback failed")

    def _fill_from_fallback(self, keys: Sequence[str], values: list[float | None]) -> None:
        """Redis misses may have been computed here during an outage: look them up in the
        fallback; Redis hits are written through so the fallback is warm for the next one."""
        missing = [key for key, value in zip(keys, values, strict=True) if value is None]
        found = {key: value for key, value in zip(keys, values, strict=True) if value is not None}
        if found:
            self.fallback.set_many(found)
        if missing:
            recovered = dict(zip(missing, self.fallback.get_many(missing), strict=True))
            for index, key in enumerate(keys):
                if values[index] is None:
                    values[index] = recovered.get(key)
