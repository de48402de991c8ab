"""The local stand-in for the Kubernetes deployment: one private redis-server, two `ospo serve`
replicas on loopback ports sharing it (and one data dir), and a trainer client that round-robins
between them. Replica 2 answers from the shared cache what replica 1 computed; killing one
replica mid-run loses no request (the client retries on the other).

The round robin is an httpx transport handed to trainer_client.AttributionClient: the client's
own retries (connection refused or reset) then land on the next replica, which is what a
ClusterIP Service does for a trainer pod.
"""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import redis_servers
from tests.support import service_process as svc


class RoundRobinTransport(httpx.BaseTransport):
    """Sends each request to the next of several base URLs (host and port rewritten)."""

    def __init__(self, base_urls: Sequence[str]) -> None:
        self.targets = [httpx.URL(url) for url in base_urls]
        self._next = itertools.cycle(range(len(self.targets)))
        self._lock = threading.Lock()
        self._inner = httpx.HTTPTransport()
        self.sent: Counter[int] = Counter()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            index = next(self._next)
            self.sent[index] += 1
        target = self.targets[index]
        request.url = request.url.copy_with(
            scheme=target.scheme, host=target.host, port=target.port
        )
        request.headers["host"] = f"{target.host}:{target.port}"
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


@pytest.fixture(scope="module")
def cluster(
    service_data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    binary = redis_servers.redis_server_binary()
    if binary is None:
        pytest.skip("redis-server is not on PATH (the cluster stand-in starts its own)")
    workdir = tmp_path_factory.mktemp("cluster")
    redis = redis_servers.PrivateRedis(binary, workdir / "redis")
    replicas = [
        svc.ServiceProcess(f"replica-{n}", service_data_dir, workdir, redis_url=redis.url)
        for n in (1, 2)
    ]
    try:
        redis.start()
        for replica in replicas:  # start both, then wait: they load in parallel
            replica.start()
        for replica in replicas:
            assert replica.wait_ready()["cache"] == {"backend": "redis", "degraded": False}
        yield {"redis": redis, "replicas": replicas}
    finally:
        for replica in replicas:
            replica.stop()
        redis.stop()


def test_second_replica_answers_from_the_cache_the_first_filled(
    cluster: dict[str, Any], demo_query_records: list[dict[str, Any]]
) -> None:
    first, second = cluster["replicas"]
    body = svc.attribute_body(demo_query_records, seed=7000, groups=2, responses=3)
    computed = httpx.post(f"{first.url}/attribute", json=body, timeout=120).json()
    assert computed["stats"]["cache_hits"] == 0 and computed["stats"]["encoded"] > 0
    shared = httpx.post(f"{second.url}/attribute", json=body, timeout=120).json()
    assert svc.answer_part(shared) == svc.answer_part(computed)
    stats = shared["stats"]
    assert stats["cache_hits"] == stats["unique_queries"] == computed["stats"]["unique_queries"]
    assert stats["encoded"] == 0


def test_round_robin_client_spreads_and_shares(
    cluster: dict[str, Any], demo_query_records: list[dict[str, Any]]
) -> None:
    from trainer_client import AttributionClient

    replicas = cluster["replicas"]
    transport = RoundRobinTransport([r.url for r in replicas])
    bodies = [svc.attribute_body(demo_query_records, seed=7100 + i) for i in range(4)]
    with AttributionClient(replicas[0].url, transport=transport, timeout=120.0) as client:
        for body in bodies:
            # Sent twice in a row: the round robin puts the two on different replicas.
            cold = client.attribute(*svc.client_groups(body))
            warm = client.attribute(*svc.client_groups(body))
            assert warm.groups == cold.groups
            assert warm.stats.cache_hits == warm.stats.unique_queries > 0
    assert transport.sent[0] == transport.sent[1] == len(bodies)


def test_client_accepts_several_base_urls(
    cluster: dict[str, Any], demo_query_records: list[dict[str, Any]]
) -> None:
    """The trainer client itself should take the replicas' URLs (spread and fail over across
    them) so users need no transport of their own when there is no load balancer."""
    from trainer_client import AttributionClient

    replicas = cluster["replicas"]
    body = svc.attribute_body(demo_query_records, seed=7200)
    with AttributionClient([r.url for r in replicas], timeout=120.0) as client:
        result = client.attribute(*svc.client_groups(body))
    assert len(result.groups) == 1


def test_killing_a_replica_mid_run_loses_no_request(
    cluster: dict[str, Any], demo_query_records: list[dict[str, Any]]
) -> None:
    from trainer_client import AttributionClient, RetryPolicy

    replicas = cluster["replicas"]
    bodies = [svc.attribute_body(demo_query_records, seed=7300 + i) for i in range(6)]
    policy = RetryPolicy(max_retries=6, backoff_base=0.1, backoff_max=1.0)
    transport = RoundRobinTransport([r.url for r in replicas])  # counts requests per replica
    with AttributionClient(
        replicas[0].url, transport=transport, retry=policy, timeout=120.0
    ) as client:
        expected = [client.attribute(*svc.client_groups(body)) for body in bodies]
        loop = svc.RequestLoop(
            lambda i: client.attribute(*svc.client_groups(bodies[i])), len(bodies), workers=3
        ).start()
        try:
            loop.wait_for(2 * len(bodies), timeout_s=180)
            replicas[1].kill()  # a node failure: in-flight requests on it are cut off
            killed_at = loop.completed
            loop.wait_for(killed_at + 3 * len(bodies), timeout_s=180)
        finally:
            outcomes = loop.stop()
    assert [repr(o.error) for o in loop.failures()] == []
    assert len(outcomes) >= killed_at + 3 * len(bodies)
    for outcome in outcomes:
        assert outcome.result.groups == expected[outcome.index].groups
    assert transport.sent[1] > 0 and transport.sent[0] > 0
    assert replicas[0].running and replicas[0].readyz()["status"] == "ready"
