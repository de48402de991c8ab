"""AsyncAttributionClient: the same behaviour as the sync twin, over asyncio."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

import trainer_client as tc


def make_client(service: Any, sleeps: list[float], **kwargs: Any) -> tc.AsyncAttributionClient:
    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    kwargs.setdefault("jitter", lambda: 0.0)
    return tc.AsyncAttributionClient(
        "http://ospo.test", transport=httpx.MockTransport(service), sleep=sleep, **kwargs
    )


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_chunks_are_gathered_and_reassembled_in_order(fake_service, sleeps, make_groups):
    groups = make_groups(9, size=2)

    async def go() -> Any:
        async with make_client(fake_service, sleeps, max_groups_per_request=2) as client:
            return await client.attribute(groups)

    result = run(go())
    assert len(fake_service.attribute_bodies()) == 5
    assert [g.id for g in result.groups] == [g.id for g in groups]
    assert result.stats.coalitions == 90
    for group, group_result in zip(groups, result.groups, strict=True):
        assert [r.reward for r in group_result.responses] == [
            float(len(r.text)) for r in group.responses
        ]


def test_retries_with_backoff_and_retry_after(fake_service, sleeps, reply, make_groups):
    fake_service.fail_next(
        reply.raise_(httpx.ReadTimeout),
        reply.status(503, headers={"Retry-After": "2"}),
        reply.status(500),
    )

    async def go() -> Any:
        async with make_client(fake_service, sleeps) as client:
            return await client.attribute(make_groups(1))

    run(go())
    assert sleeps == [0.25, 2.0, 1.0]


def test_errors_are_mapped(fake_service, sleeps, reply, make_groups):
    fake_service.fail_next(reply.status(401, error={"code": "unauthorized", "message": "key"}))

    async def go() -> Any:
        async with make_client(fake_service, sleeps) as client:
            await client.attribute(make_groups(1))

    with pytest.raises(tc.AuthenticationError) as info:
        run(go())
    assert info.value.code == "unauthorized" and sleeps == []


def test_gives_up_after_retries(fake_service, sleeps, reply, make_groups):
    fake_service.fail_next(*[reply.raise_(httpx.ConnectError)] * 4)

    async def go() -> Any:
        async with make_client(fake_service, sleeps, max_retries=3) as client:
            await client.attribute(make_groups(1))

    with pytest.raises(tc.ConnectError):
        run(go())
    assert len(sleeps) == 3


def test_other_endpoints(fake_service, sleeps):
    async def go() -> Any:
        async with make_client(fake_service, sleeps, api_key="k") as client:
            return (
                await client.reward(["q"], ["p"], ["l"]),
                await client.retrievers(),
                await client.search("default", "boots", k=2),
                await client.healthz(),
                await client.readyz(),
            )

    reward, retrievers, hits, healthy, ready = run(go())
    assert reward.rewards == (0.01,)
    assert retrievers[0].name == "default"
    assert len(hits) == 2 and healthy and ready.ready
    assert all(r.headers["authorization"] == "Bearer k" for r in fake_service.requests)


def test_concurrency_is_bounded(attribute_answer, make_groups):
    in_flight = 0
    peak = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return httpx.Response(200, json=attribute_answer(json.loads(request.content)))

    async def go() -> Any:
        client = tc.AsyncAttributionClient(
            "http://ospo.test",
            transport=httpx.MockTransport(handler),
            max_groups_per_request=1,
            max_concurrency=3,
        )
        async with client:
            return await client.attribute(make_groups(10))

    result = run(go())
    assert len(result.groups) == 10
    assert 1 < peak <= 3


def test_retry_budget_bounds_the_time_spent_retrying(fake_service, reply, make_groups):
    now = [0.0]
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    fake_service.fail_next(*[reply.raise_(httpx.ConnectError)] * 100)
    policy = tc.RetryPolicy(max_retries=None, backoff_base=1.0, backoff_max=4.0, max_elapsed_s=10.0)

    async def go() -> Any:
        client = tc.AsyncAttributionClient(
            "http://ospo.test",
            transport=httpx.MockTransport(fake_service),
            sleep=sleep,
            jitter=lambda: 0.999999,
            clock=lambda: now[0],
            retry=policy,
        )
        async with client:
            await client.attribute(make_groups(1))

    with pytest.raises(tc.ConnectError):
        run(go())
    assert sleeps == pytest.approx([1.0, 2.0, 4.0], abs=1e-5)
