"""Score caches for partial-query retrieval scores: Redis when configured, else in-process.

This package is the only code importing redis. It takes plain keyword arguments, not the
Settings object, so it does not depend on the config module.
"""

from __future__ import annotations

from collections.abc import Callable

from service.cache.base import KEY_PREFIX, ScoreCache, cache_key
from service.cache.memory_store import MemoryScoreCache
from service.cache.redis_store import RedisScoreCache

__all__ = [
    "KEY_PREFIX",
    "MemoryScoreCache",
    "RedisScoreCache",
    "ScoreCache",
    "cache_key",
    "create_cache",
]


def create_cache(
    redis_url: str | None,
    *,
    ttl_s: float | None,
    memory_items: int,
    timeout_s: float,
    retry_interval_s: float,
    on_error: Callable[[str], None] | None = None,
) -> ScoreCache:
    """A RedisScoreCache (falling back to an LRU of `memory_items`) when `redis_url` is set,
    else that LRU alone. No I/O happens here: an unreachable Redis shows up as `degraded`
    on the first call."""
    memory = MemoryScoreCache(memory_items, ttl_s)
    if not redis_url:
        return memory
    return RedisScoreCache(
        redis_url,
        ttl_s=ttl_s,
        timeout_s=timeout_s,
        retry_interval_s=retry_interval_s,
        fallback=memory,
        on_error=on_error,
    )
