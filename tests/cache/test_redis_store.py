"""RedisScoreCache against the real Redis: round trips, TTL, exact floats, one MGET, stats."""

from __future__ import annotations

import math
import struct
from typing import Any

import pytest
import redis as redis_py
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.cache import MemoryScoreCache, RedisScoreCache, ScoreCache, cache_key, create_cache

TTL_S = 3600


def make_cache(url: str, *, ttl_s: float | None = TTL_S, **kwargs: Any) -> RedisScoreCache:
    return RedisScoreCache(
        url,
        ttl_s=ttl_s,
        timeout_s=1.0,
        retry_interval_s=0.5,
        fallback=MemoryScoreCache(1000, ttl_s),
        **kwargs,
    )


def bits(value: float) -> bytes:
    return struct.pack("<d", value)


def test_set_then_get_through_redis(
    redis_url: str, redis_client: redis_py.Redis[bytes], redis_key_prefix: str
) -> None:
    cache = make_cache(redis_url)
    assert isinstance(cache, ScoreCache)
    keys = [redis_key_prefix + name for name in ("a", "b", "c")]
    cache.set_many({keys[0]: 0.5, keys[1]: 1.0})
    # Stored in Redis itself, as float text, readable by any client.
    assert redis_client.mget(keys) == [b"0.5", b"1.0", None]
    # A second cache (another worker process) with an empty fallback reads them from Redis.
    other = make_cache(redis_url)
    assert other.get_many(keys) == [0.5, 1.0, None]
    assert other.fallback.get_many(keys[:2]) == [0.5, 1.0]  # Redis hits are written through
    assert other.stats() == {"hits": 2, "misses": 1, "errors": 0}
    assert cache.backend == "redis" and cache.degraded is False and cache.ping() is True
    cache.close()
    other.close()


def test_writes_carry_the_ttl(
    redis_url: str, redis_client: redis_py.Redis[bytes], redis_key_prefix: str
) -> None:
    cache = make_cache(redis_url, ttl_s=120)
    key = redis_key_prefix + "ttl"
    cache.set_many({key: 0.75})
    pttl = redis_client.pttl(key)
    assert 110_000 < pttl <= 120_000
    cache.close()


def test_without_ttl_writes_do_not_expire(
    redis_url: str, redis_client: redis_py.Redis[bytes], redis_key_prefix: str
) -> None:
    cache = make_cache(redis_url, ttl_s=None)
    key = redis_key_prefix + "forever"
    cache.set_many({key: 0.1})
    assert redis_client.ttl(key) == -1
    cache.close()


def test_real_cache_keys_round_trip(
    redis_url: str, redis_client: redis_py.Redis[bytes], redis_key_prefix: str
) -> None:
    # cache_key() keys cannot carry the test prefix: delete them explicitly.
    keys = [
        cache_key(
            retriever=redis_key_prefix,
            encoder="hash:64",
            index_version="v",
            k=10,
            target="t",
            pool="",
            query=f"query {i}",
        )
        for i in range(20)
    ]
    try:
        cache = make_cache(redis_url)
        cache.set_many({key: i / 3 for i, key in enumerate(keys)})
        assert make_cache(redis_url).get_many(keys) == [i / 3 for i in range(20)]
    finally:
        redis_client.delete(*keys)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.floats(allow_nan=False)
    | st.sampled_from([0.0, -0.0, 5e-324, -5e-324, 1.7976931348623157e308, 0.1 + 0.2])
)
def test_floats_round_trip_exactly(redis_url: str, redis_key_prefix: str, value: float) -> None:
    key = redis_key_prefix + "float"
    writer = make_cache(redis_url)
    writer.set_many({key: value})
    writer.close()
    # A fresh reader's fallback is empty, so the value really comes from Redis text.
    reader = make_cache(redis_url)
    (read,) = reader.get_many([key])
    reader.close()
    assert read is not None and bits(read) == bits(value)


def test_nan_round_trips(redis_url: str, redis_key_prefix: str) -> None:
    key = redis_key_prefix + "nan"
    make_cache(redis_url).set_many({key: math.nan})
    (read,) = make_cache(redis_url).get_many([key])
    assert read is not None and math.isnan(read)


def test_foreign_text_under_a_key_is_a_miss(
    redis_url: str, redis_client: redis_py.Redis[bytes], redis_key_prefix: str
) -> None:
    key = redis_key_prefix + "garbage"
    redis_client.set(key, b"not a float")
    cache = make_cache(redis_url)
    assert cache.get_many([key]) == [None]
    assert cache.degraded is False


def test_redis_miss_is_answered_from_the_fallback(redis_url: str, redis_key_prefix: str) -> None:
    # What this process computed while Redis was away is still used after it is back.
    cache = make_cache(redis_url)
    key = redis_key_prefix + "only-local"
    cache.fallback.set_many({key: 0.42})
    assert cache.get_many([key]) == [0.42]


def test_get_many_is_one_mget_and_set_many_one_pipeline(private_redis: Any) -> None:
    # A private server, so the command statistics are ours alone.
    admin = redis_py.Redis.from_url(private_redis.url)
    cache = make_cache(private_redis.url)
    cache.ping()
    admin.config_resetstat()
    keys = [f"k{i}" for i in range(50)]
    cache.set_many({key: float(i) for i, key in enumerate(keys)})
    cache.get_many(keys)
    stats = admin.info("commandstats")
    assert stats["cmdstat_mget"]["calls"] == 1
    assert stats["cmdstat_set"]["calls"] == 50
    assert "cmdstat_get" not in stats
    assert "cmdstat_multi" not in stats  # pipeline without a transaction
    assert "cmdstat_exec" not in stats
    assert admin.info("clients")["connected_clients"] <= 3  # pooled: admin + cache
    cache.close()
    admin.close()


def test_empty_calls_do_not_touch_redis(private_redis: Any) -> None:
    admin = redis_py.Redis.from_url(private_redis.url)
    admin.config_resetstat()
    cache = make_cache(private_redis.url)
    assert cache.get_many([]) == []
    cache.set_many({})
    assert "cmdstat_mget" not in admin.info("commandstats")
    admin.close()


def test_create_cache_picks_the_backend(redis_url: str) -> None:
    memory = create_cache(None, ttl_s=60, memory_items=10, timeout_s=0.25, retry_interval_s=2.0)
    assert isinstance(memory, MemoryScoreCache) and memory.backend == "memory"
    assert memory.max_items == 10 and memory.ttl_s == 60
    errors: list[str] = []
    cache = create_cache(
        redis_url,
        ttl_s=60,
        memory_items=10,
        timeout_s=0.25,
        retry_interval_s=2.0,
        on_error=errors.append,
    )
    assert isinstance(cache, RedisScoreCache)
    assert cache.backend == "redis" and cache.ping() is True
    assert cache.timeout_s == 0.25 and cache.retry_interval_s == 2.0
    assert cache.fallback.max_items == 10
    cache.close()


@pytest.mark.parametrize(
    "kwargs",
    [{"timeout_s": 0.0}, {"retry_interval_s": -1.0}, {"ttl_s": 0.0}],
)
def test_rejects_bad_settings(kwargs: dict[str, float]) -> None:
    arguments: dict[str, Any] = {"ttl_s": 60.0, "timeout_s": 0.25, "retry_interval_s": 2.0}
    with pytest.raises(ValueError):
        RedisScoreCache(
            "redis://127.0.0.1:1/0", fallback=MemoryScoreCache(10), **(arguments | kwargs)
        )
