"""Backpressure and cancellation on a live `ospo serve` with one work slot and a queue of one:
past the queue the service answers 503 + Retry-After at once (for /attribute and /reward), the
trainer client's retries honour Retry-After and get every answer through, and a client that
disconnects has its work cancelled (queued work never runs, running work never completes)."""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.support import service_process as svc

RETRY_AFTER_S = 1
SLOW_OPTIONS = {"k": 100, "max_width": 4, "max_coalitions": 32, "cache": False}


@pytest.fixture(scope="module")
def narrow_service(
    service_data_dir: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    process = svc.ServiceProcess(
        "ospo-narrow",
        service_data_dir,
        tmp_path_factory.mktemp("narrow"),
        env={
            "OSPO_MAX_INFLIGHT": "1",
            "OSPO_MAX_QUEUE": "1",
            "OSPO_RETRY_AFTER_S": str(RETRY_AFTER_S),
            "OSPO_BATCH_WINDOW_MS": "0",
        },
    )
    try:
        process.start_ready()
        yield process
    finally:
        process.stop()


def slow_body(demo_query_records: list[dict[str, Any]], seed: int) -> dict[str, Any]:
    """Uncached work of a few seconds on this machine (a few hundred texts to encode)."""
    return svc.attribute_body(demo_query_records, seed, groups=4, responses=6, options=SLOW_OPTIONS)


def timed_post(
    url: str, path: str, body: dict[str, Any], timeout: float = 300.0
) -> tuple[int, dict[str, str], float]:
    started = time.monotonic()
    response = httpx.post(url + path, json=body, timeout=timeout)
    return response.status_code, dict(response.headers), time.monotonic() - started


def test_overload_is_refused_at_once_with_retry_after(
    narrow_service: Any, demo_query_records: list[dict[str, Any]]
) -> None:
    bodies = [slow_body(demo_query_records, 300 + i) for i in range(5)]
    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        results = list(pool.map(lambda b: timed_post(narrow_service.url, "/attribute", b), bodies))
    served = [r for r in results if r[0] == 200]
    refused = [r for r in results if r[0] == 503]
    assert len(served) + len(refused) == len(results), [r[0] for r in results]
    # One slot + one queue place: at most two are served, the rest are refused.
    assert 1 <= len(served) <= 2 and len(refused) >= 3, [r[0] for r in results]
    fastest_served = min(seconds for _, _, seconds in served)
    for _, headers, seconds in refused:
        assert headers.get("retry-after") == str(RETRY_AFTER_S)
        assert seconds < min(1.0, fastest_served), "the 503 waited instead of being immediate"
    metrics = narrow_service.metrics_text()
    assert (
        svc.metric_value(metrics, "ospo_requests_total", {"route": "/attribute", "status": "503"})
        >= 3
    )
    assert svc.metric_value(metrics, "ospo_overloaded_total") >= len(refused), (
        "ospo_overloaded_total does not count the refusals"
    )
    assert svc.metric_value(metrics, "ospo_queue_depth") == 0
    assert svc.metric_value(metrics, "ospo_inflight") == 0


def test_reward_is_bounded_by_the_same_queue(
    narrow_service: Any, demo_query_records: list[dict[str, Any]]
) -> None:
    def reward_body(i: int) -> dict[str, Any]:
        texts = [f"<answer>{q['text']} variant {i}</answer>" for q in demo_query_records[:150]]
        return {
            "query": texts,
            "prompts": [""] * len(texts),
            "labels": [q["id"] for q in demo_query_records[:150]],
        }

    with ThreadPoolExecutor(max_workers=5) as pool:
        results = list(
            pool.map(
                lambda i: timed_post(narrow_service.url, "/reward?k=100", reward_body(i)), range(5)
            )
        )
    statuses = sorted(r[0] for r in results)
    assert set(statuses) <= {200, 503}, statuses
    assert statuses.count(503) >= 1, f"/reward bypasses the bounded queue: {statuses}"


def test_client_retries_honour_retry_after(
    narrow_service: Any, demo_query_records: list[dict[str, Any]]
) -> None:
    from trainer_client import AttributionClient, RetryPolicy

    slept: list[float] = []
    lock = threading.Lock()

    def sleep(seconds: float) -> None:
        with lock:
            slept.append(seconds)
        time.sleep(seconds)

    bodies = [
        svc.attribute_body(demo_query_records, 400 + i, groups=2, responses=4, options=SLOW_OPTIONS)
        for i in range(5)
    ]
    policy = RetryPolicy(max_retries=60, backoff_base=0.05, backoff_max=0.5)
    with AttributionClient(narrow_service.url, retry=policy, timeout=300.0, sleep=sleep) as client:
        with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
            results = list(pool.map(lambda b: client.attribute(*svc.client_groups(b)), bodies))
    assert [len(r.groups) for r in results] == [2] * len(bodies)
    assert slept, "nothing was refused: the test did not overload the service"
    # Every wait after a 503 is the server's Retry-After, not the client's short backoff.
    assert all(seconds == RETRY_AFTER_S for seconds in slept), slept


def _abandon(url: str, body: dict[str, Any], reached: Any) -> None:
    """Send the request on a raw socket and hang up once `reached()` holds (the request is
    running, or queued), so the test does not depend on guessing how long the work takes."""
    target = httpx.URL(url)
    payload = json.dumps(body).encode()
    head = (
        f"POST /attribute HTTP/1.1\r\nHost: {target.host}:{target.port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    ).encode()
    with socket.create_connection((target.host, target.port), timeout=10) as sock:
        sock.sendall(head + payload)
        assert svc.wait_until(reached, 30, interval_s=0.02), "the request never got that far"
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def test_disconnected_client_work_is_cancelled(
    narrow_service: Any, demo_query_records: list[dict[str, Any]]
) -> None:
    url = narrow_service.url
    # Calibrate: how long the work takes when nobody leaves.
    cached = dict(SLOW_OPTIONS, cache=True)
    probe = svc.attribute_body(demo_query_records, 500, groups=4, responses=6, options=cached)
    status, _, duration = timed_post(url, "/attribute", probe)
    assert status == 200
    before = narrow_service.metrics_text()

    def inflight() -> float:
        return float(svc.metric_value(narrow_service.metrics_text(), "ospo_inflight"))

    # Running work: the client leaves early; the scores must never reach the cache.
    running = svc.attribute_body(demo_query_records, 501, groups=4, responses=6, options=cached)
    _abandon(url, running, lambda: inflight() == 1)
    # Queued work: while a slow request holds the slot, a queued client leaves.
    holder = threading.Thread(
        target=timed_post, args=(url, "/attribute", slow_body(demo_query_records, 502))
    )
    holder.start()
    assert svc.wait_until(
        lambda: svc.metric_value(narrow_service.metrics_text(), "ospo_inflight") == 1, 10
    )
    queued = svc.attribute_body(demo_query_records, 503, groups=4, responses=6, options=cached)
    _abandon(
        url,
        queued,
        lambda: svc.metric_value(narrow_service.metrics_text(), "ospo_queue_depth") == 1,
    )
    # The queue place is free again at once: a new request queues instead of being refused.
    assert svc.wait_until(
        lambda: svc.metric_value(narrow_service.metrics_text(), "ospo_queue_depth") == 0, 2
    )
    holder.join(timeout=300)
    time.sleep(duration + 1.0)  # anything not cancelled would have finished by now

    after = narrow_service.metrics_text()
    gone = svc.metric_value(
        after, "ospo_requests_total", {"route": "/attribute", "status": "499"}
    ) - svc.metric_value(before, "ospo_requests_total", {"route": "/attribute", "status": "499"})
    assert gone == 2, f"expected both abandoned requests recorded as 499, got {gone}"
    for body, what in ((running, "running"), (queued, "queued")):
        again = httpx.post(url + "/attribute", json=body, timeout=300).json()
        stats = again["stats"]
        assert stats["cache_hits"] < stats["unique_queries"], (
            f"the {what} request's work completed after its client left: {stats}"
        )


@pytest.fixture(autouse=True)
def _calm(narrow_service: Any) -> None:
    """Each test starts with nothing running or queued (earlier tests' work drained)."""

    def idle() -> bool:
        text = narrow_service.metrics_text()
        return (
            svc.metric_value(text, "ospo_inflight") == 0
            and svc.metric_value(text, "ospo_queue_depth") == 0
        )

    assert svc.wait_until(idle, 300, interval_s=0.5)
