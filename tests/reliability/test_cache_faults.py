"""Redis faults under load, against a real `ospo serve` child and a private redis-server:
killed (no request fails, /readyz says degraded, answers unchanged, back on Redis once it
returns), paused (requests still finish within the cache timeout) and the service restarted
(the Redis cache survives, so the repeated request is all cache hits)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import redis as redis_py

from tests.support import service_process as svc

REDIS_TIMEOUT_S = 0.25
RETRY_INTERVAL_S = 0.5
CACHE_ENV = {
    "OSPO_REDIS_TIMEOUT_S": str(REDIS_TIMEOUT_S),
    "OSPO_REDIS_RETRY_INTERVAL_S": str(RETRY_INTERVAL_S),
}


def redis_keys(url: str) -> int:
    client = redis_py.Redis.from_url(url, socket_timeout=5.0)
    try:
        return sum(1 for _ in client.scan_iter(match="ospo:*", count=1000))
    finally:
        client.close()


def post(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/attribute", json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def cache_state(service: Any) -> dict[str, Any]:
    state: dict[str, Any] = service.readyz()["cache"]
    return state


def test_redis_killed_while_requests_run(
    private_redis: Any, start_service: Callable[..., Any], demo_query_records: list[dict[str, Any]]
) -> None:
    service = start_service("ospo-redis-kill", redis_url=private_redis.url, env=CACHE_ENV)
    assert cache_state(service) == {"backend": "redis", "degraded": False}
    bodies = [svc.attribute_body(demo_query_records, seed) for seed in range(5)]
    with httpx.Client(base_url=service.url, timeout=120.0) as client:
        before = [svc.answer_part(post(client, body)) for body in bodies]
        assert redis_keys(private_redis.url) > 0, "the service wrote nothing to Redis"

        loop = svc.RequestLoop(lambda i: post(client, bodies[i]), len(bodies), workers=3).start()
        try:
            loop.wait_for(len(bodies), timeout_s=120)
            private_redis.kill()
            # Requests keep running on the in-process LRU; the first Redis error flips readyz.
            assert svc.wait_until(lambda: cache_state(service)["degraded"], 15), (
                "readyz never reported the degraded cache"
            )
            assert cache_state(service)["backend"] == "redis"
            during_outage = loop.completed
            loop.wait_for(during_outage + 2 * len(bodies), timeout_s=120)
            # Work first seen during the outage is computed and answered too.
            fresh = svc.attribute_body(demo_query_records, 100)
            fresh_answer = svc.answer_part(post(client, fresh))

            private_redis.start()  # same port, empty (no persistence)
            assert svc.wait_until(lambda: not cache_state(service)["degraded"], 20), (
                "the service never went back to Redis after it returned"
            )
            loop.wait_for(loop.completed + len(bodies), timeout_s=120)
        finally:
            outcomes = loop.stop()
        assert [o.error for o in loop.failures()] == []
        assert len(outcomes) >= 4 * len(bodies)
        for outcome in outcomes:
            assert svc.answer_part(outcome.result) == before[outcome.index]
        # Back on Redis: new work lands in the restarted server, answers are unchanged.
        post(client, svc.attribute_body(demo_query_records, 101))
        assert redis_keys(private_redis.url) > 0
        assert svc.answer_part(post(client, fresh)) == fresh_answer
    metrics = service.metrics_text()
    assert svc.metric_value(metrics, "ospo_redis_errors_total") >= 1
    assert svc.metric_value(metrics, "ospo_cache_degraded") == 0


def test_redis_paused_requests_meet_the_cache_timeout(
    private_redis: Any, start_service: Callable[..., Any], demo_query_records: list[dict[str, Any]]
) -> None:
    service = start_service("ospo-redis-pause", redis_url=private_redis.url, env=CACHE_ENV)
    bodies = [svc.attribute_body(demo_query_records, seed) for seed in range(3)]
    # Two Redis round trips at most (read, write-back), each cut at the timeout, plus margin.
    cache_budget_ms = (2 * REDIS_TIMEOUT_S + 0.5) * 1000
    with httpx.Client(base_url=service.url, timeout=60.0) as client:
        before = [post(client, body) for body in bodies]
        warm_ms = max(
            answer["stats"]["timings_ms"]["total"] for answer in (post(client, b) for b in bodies)
        )
        private_redis.pause()
        try:
            for body, first in zip(bodies, before, strict=True):
                answer = post(client, body)
                assert svc.answer_part(answer) == svc.answer_part(first)
                timings = answer["stats"]["timings_ms"]
                assert timings["cache"] <= cache_budget_ms, timings
                # All scores are in the in-process copy: no encoding, so the stall is the only cost.
                assert timings["total"] <= warm_ms + cache_budget_ms + 1000, (timings, warm_ms)
            cold = post(client, svc.attribute_body(demo_query_records, 200))
            assert cold["stats"]["timings_ms"]["cache"] <= cache_budget_ms, cold["stats"]
            assert cache_state(service)["degraded"] is True
        finally:
            private_redis.resume()
        assert svc.wait_until(
            lambda: post(client, bodies[0]) is not None and not cache_state(service)["degraded"],
            20,
            interval_s=RETRY_INTERVAL_S,
        ), "the service never went back to Redis after it resumed"


def test_service_restart_keeps_the_redis_cache_warm(
    private_redis: Any, start_service: Callable[..., Any], demo_query_records: list[dict[str, Any]]
) -> None:
    from trainer_client import AttributionClient, RetryPolicy

    service = start_service("ospo-restart", redis_url=private_redis.url, env=CACHE_ENV)
    bodies = [svc.attribute_body(demo_query_records, seed) for seed in range(3)]
    # Long enough retries to ride out a restart (model load) on a busy machine.
    policy = RetryPolicy(max_retries=40, backoff_base=0.25, backoff_max=2.0)
    with (
        httpx.Client(base_url=service.url, timeout=120.0) as raw,
        AttributionClient(service.url, retry=policy, timeout=120.0) as client,
    ):
        first = [post(raw, body) for body in bodies]
        expected = [client.attribute(*svc.client_groups(body)) for body in bodies]

        loop = svc.RequestLoop(
            lambda i: client.attribute(*svc.client_groups(bodies[i])), len(bodies), workers=2
        ).start()
        try:
            loop.wait_for(len(bodies), timeout_s=120)
            assert service.stop() is not None
            service.start_ready()
            loop.wait_for(loop.completed + 2 * len(bodies), timeout_s=300)
        finally:
            outcomes = loop.stop()
        assert [o.error for o in loop.failures()] == []
        for outcome in outcomes:
            assert outcome.result.groups == expected[outcome.index].groups

        # A fresh process has an empty in-process cache: every hit below came from Redis.
        for body, answer in zip(bodies, first, strict=True):
            again = post(raw, body)
            assert svc.answer_part(again) == svc.answer_part(answer)
            stats = again["stats"]
            assert stats["unique_queries"] == answer["stats"]["unique_queries"] > 0
            assert stats["cache_hits"] == stats["unique_queries"], stats
            assert stats["encoded"] == 0, stats
    assert service.starts == 2
