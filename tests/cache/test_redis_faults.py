"""RedisScoreCache under Redis faults, each against a redis-server of the test's own.

Killed mid-run: no call raises, the cache degrades to its LRU (one warning), keeps every value
it had, and goes back to Redis once it is restarted. Paused (SIGSTOP): calls return within
the timeout and proceed from the LRU; after SIGCONT the cache recovers.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import redis as redis_py

from service.cache import MemoryScoreCache, RedisScoreCache

LOGGER = "service.cache.redis_store"
# Scheduling slack on a loaded 2-core machine, on top of the cache's own timeout.
MARGIN_S = 0.5


def make_cache(
    url: str, *, timeout_s: float, retry_interval_s: float, errors: list[str]
) -> RedisScoreCache:
    return RedisScoreCache(
        url,
        ttl_s=600,
        timeout_s=timeout_s,
        retry_interval_s=retry_interval_s,
        fallback=MemoryScoreCache(500_000, 600),
        on_error=errors.append,
    )


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout_s}s waiting for {what}"
        time.sleep(0.02)


def timed(call: Callable[[], Any]) -> tuple[float, Any]:
    started = time.monotonic()
    result = call()
    return time.monotonic() - started, result


def test_unreachable_redis_serves_from_the_fallback(private_redis: Any, caplog: Any) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    private_redis.kill()  # nothing listens on this port now
    errors: list[str] = []
    cache = make_cache(private_redis.url, timeout_s=0.25, retry_interval_s=60, errors=errors)
    cache.set_many({"a": 0.5})
    assert errors == ["set"]
    assert cache.degraded is True and cache.backend == "redis"
    assert cache.get_many(["a", "b"]) == [0.5, None]
    assert errors == ["set"]  # degraded: Redis is not even tried until the retry interval
    assert cache.ping() is False
    assert cache.stats() == {"hits": 1, "misses": 1, "errors": 1}
    assert [r.levelno for r in caplog.records if r.name == LOGGER] == [logging.WARNING]
    assert "127.0.0.1" in caplog.records[0].getMessage()


def test_a_failing_on_error_callback_does_not_escape(private_redis: Any) -> None:
    private_redis.kill()

    def broken(operation: str) -> None:
        raise RuntimeError("metrics are broken too")

    cache = RedisScoreCache(
        private_redis.url,
        ttl_s=60,
        timeout_s=0.25,
        retry_interval_s=60,
        fallback=MemoryScoreCache(10),
        on_error=broken,
    )
    cache.set_many({"a": 1.0})
    assert cache.get_many(["a"]) == [1.0]
    assert cache.degraded is True


def test_redis_killed_under_load_then_restarted(private_redis: Any, caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    timeout_s, retry_interval_s, workers = 0.25, 0.3, 6
    errors: list[str] = []
    cache = make_cache(
        private_redis.url, timeout_s=timeout_s, retry_interval_s=retry_interval_s, errors=errors
    )
    admin = redis_py.Redis.from_url(private_redis.url, socket_timeout=2.0)
    before = {f"before:{i}": i / 7 for i in range(200)}
    cache.set_many(before)
    assert admin.get("before:3") == repr(3 / 7).encode()

    stop = threading.Event()
    failures: list[BaseException] = []
    wrong: list[tuple[str, float | None]] = []
    slowest = [0.0] * workers
    calls = [0] * workers

    def hammer(worker: int) -> None:
        rng = random.Random(worker)
        step = 0
        while not stop.is_set():
            step += 1
            keys = rng.sample(sorted(before), 20)
            items = {f"w{worker}:{step}:{j}": j / 3 for j in range(5)}
            try:
                spent_set, _ = timed(partial(cache.set_many, items))
                spent_get, values = timed(partial(cache.get_many, keys))
            except BaseException as exc:  # noqa: BLE001 - the assertion is that nothing raises
                failures.append(exc)
                return
            calls[worker] += 2
            slowest[worker] = max(slowest[worker], spent_set, spent_get)
            wrong.extend((k, v) for k, v in zip(keys, values, strict=True) if v != before[k])
            time.sleep(0.002)  # bounds the load on a shared 2-core machine

    with ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(hammer, worker) for worker in range(workers)]
        time.sleep(0.3)
        assert not cache.degraded
        private_redis.kill()
        wait_until(lambda: cache.degraded, 5.0, "the cache to notice the dead Redis")
        outage_started, calls_at_outage = time.monotonic(), sum(calls)
        time.sleep(1.0)  # keep hammering the dead Redis
        assert cache.degraded
        assert cache.get_many(list(before)) == list(before.values())
        errors_during_outage = len(errors)
        calls_during_outage = sum(calls) - calls_at_outage
        outage_s = time.monotonic() - outage_started
        private_redis.start()
        wait_until(lambda: not cache.degraded, 5.0, "the cache to return to Redis")
        time.sleep(0.3)
        stop.set()
        for future in futures:
            future.result(timeout=30)

    assert not failures, failures[:3]
    assert not wrong, wrong[:5]
    assert max(slowest) < timeout_s + MARGIN_S
    assert set(errors) <= {"get", "set"} and errors
    # While degraded, Redis is only probed once per retry interval (plus the calls that were
    # in flight when it died), not once per call.
    probes = outage_s / retry_interval_s + 2
    assert errors_during_outage <= workers * 2 + probes, (errors_during_outage, outage_s)
    assert calls_during_outage > 5 * errors_during_outage
    warnings = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert any("is back" in r.getMessage() for r in caplog.records)

    # Back on Redis: new writes land in the restarted server (checked with another client).
    assert cache.degraded is False
    cache.set_many({"after": 0.125})
    assert admin.get("after") == b"0.125"
    assert 590 <= admin.ttl("after") <= 600
    assert cache.ping() is True
    # The restarted Redis lost "before" (no persistence); the fallback still answers it.
    assert admin.get("before:3") is None
    assert cache.get_many(["before:3"]) == [3 / 7]
    assert not cache.degraded
    admin.close()
    cache.close()


def test_paused_redis_costs_at_most_one_timeout_then_recovers(private_redis: Any) -> None:
    timeout_s, retry_interval_s = 0.4, 1.0
    errors: list[str] = []
    writer = make_cache(
        private_redis.url, timeout_s=timeout_s, retry_interval_s=retry_interval_s, errors=errors
    )
    reader = make_cache(
        private_redis.url, timeout_s=timeout_s, retry_interval_s=retry_interval_s, errors=errors
    )
    admin = redis_py.Redis.from_url(private_redis.url, socket_timeout=5.0)
    before = {f"before:{i}": i / 9 for i in range(50)}
    writer.set_many(before)
    reader.fallback.set_many(before)  # what this worker read or computed earlier
    assert reader.get_many(["before:1"]) == [1 / 9]  # warms a pooled connection

    private_redis.pause()
    try:
        spent, _ = timed(lambda: writer.set_many({"paused:0": 0.5}))
        assert spent < timeout_s + MARGIN_S
        assert writer.degraded and errors == ["set"]

        keys = list(before)
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda _: timed(lambda: reader.get_many(keys)), range(8)))
        for spent, values in results:
            assert spent < timeout_s + MARGIN_S
            assert values == list(before.values())
        assert reader.degraded
        assert errors.count("get") >= 1

        # Until the retry interval has passed, a stalled Redis costs nothing per call.
        spent, values = timed(lambda: reader.get_many(keys))
        assert spent < timeout_s / 2 and values == list(before.values())
        assert writer.get_many(["paused:0"]) == [0.5]

        # After it, exactly one call probes (and waits one timeout); the others do not wait.
        time.sleep(retry_interval_s + 0.1)
        with ThreadPoolExecutor(4) as pool:
            spans = sorted(pool.map(lambda _: timed(lambda: reader.get_many(keys))[0], range(4)))
        assert spans[-1] < timeout_s + MARGIN_S
        assert spans[-2] < timeout_s / 2, spans
        assert reader.degraded
    finally:
        private_redis.resume()

    def back_on_redis() -> bool:
        writer.get_many(["before:0"])
        return not writer.degraded

    wait_until(back_on_redis, retry_interval_s + 5.0, "the cache to return to Redis")
    writer.set_many({"resumed": 0.25})
    assert admin.get("resumed") == b"0.25"
    assert writer.get_many(["before:2", "paused:0"]) == [2 / 9, 0.5]
    admin.close()
    writer.close()
    reader.close()
