"""Contract tests: both clients against the real service app (service.api.app.create_app),
in-process through httpx.ASGITransport (async) and over loopback under uvicorn (sync)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

import trainer_client as tc

pytest.importorskip("service.api.app", reason="service.api.app.create_app is not available yet")


@contextlib.asynccontextmanager
async def asgi_client(settings: Any, **kwargs: Any) -> AsyncIterator[tc.AsyncAttributionClient]:
    from service.api.app import create_app

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with tc.AsyncAttributionClient(
            "http://ospo.asgi", transport=transport, **kwargs
        ) as client:
            yield client


def answer_text(query: str) -> str:
    return f"<think>the user wants something</think><answer>{query}</answer>"


def groups_for(queries: dict[str, str], tokenizer: Any, n_groups: int) -> list[tc.Group]:
    groups = []
    for qid in sorted(queries)[:n_groups]:
        texts = [
            answer_text(queries[qid]),
            answer_text(" ".join(queries[qid].split()[:3])),
            answer_text("blue socks"),
        ]
        responses = []
        for text in texts:
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            offsets = tc.token_offsets(tokenizer, ids)
            responses.append(tc.Response(text=offsets.text, token_offsets=offsets.offsets))
        groups.append(
            tc.Group(id=f"prompt-{qid}", target=tc.Target(query_id=qid), responses=responses)
        )
    return groups


def test_async_attribute_against_the_real_app(
    service_settings_factory, demo_queries, smollm2_tokenizer
):
    groups = groups_for(demo_queries, smollm2_tokenizer, 3)
    # Clipping uses the std over the whole request, so only unclipped answers are chunk-invariant.
    options = tc.Options(seed=3, clip=None)

    async def go() -> Any:
        async with asgi_client(service_settings_factory()) as client:
            whole = await client.attribute(groups, options)
        async with asgi_client(service_settings_factory(), max_groups_per_request=1) as client:
            chunked = await client.attribute(groups, options)
        return whole, chunked

    whole, chunked = asyncio.run(go())
    assert [g.id for g in whole.groups] == [g.id for g in groups]
    for group, result in zip(groups, whole.groups, strict=True):
        for response, answered in zip(group.responses, result.responses, strict=True):
            assert answered.token_advantages is not None
            assert len(answered.token_advantages) == len(response.token_offsets or ())
            assert 0.0 <= answered.reward <= 1.0
        # group_norm advantages sum to ~0 within a group
        assert abs(sum(r.advantage for r in result.responses)) < 1e-6
        # the full query is at least as good as "blue socks", and its query was extracted
        assert result.responses[0].reward >= result.responses[2].reward
        assert " ".join(s.text for s in result.responses[0].segments) == " ".join(
            group.responses[0].text.split("<answer>")[1].removesuffix("</answer>").split()
        )
    assert whole.model.encoder == "hash:64"
    # deterministic service: chunked requests give the same answers, stats add up
    assert chunked.groups == whole.groups
    assert chunked.stats.coalitions == whole.stats.coalitions


def test_async_error_mapping_against_the_real_app(service_settings_factory):
    bad_offsets = tc.Group(
        id="g",
        target=tc.Target(query_id="demo-0000"),
        responses=[tc.Response("<answer>boots</answer>", token_offsets=[(0, 999)])],
    )
    unknown_retriever = tc.Options(retriever="no-such-retriever")
    good = tc.Group(
        id="g",
        target=tc.Target(query_id="demo-0000"),
        responses=[tc.Response("<answer>boots</answer>")],
    )

    async def go() -> Any:
        errors = []
        async with asgi_client(service_settings_factory()) as client:
            for call in (
                client.attribute([bad_offsets]),
                client.attribute([good], unknown_retriever),
                client.search("nope", "x"),
            ):
                try:
                    await call
                except tc.OspoClientError as exc:
                    errors.append(exc)
        return errors

    offsets_error, retriever_error, search_error = asyncio.run(go())
    assert isinstance(offsets_error, tc.ClientRequestError) and offsets_error.status == 422
    assert offsets_error.field and "token_offsets" in offsets_error.field
    assert isinstance(retriever_error, tc.ClientRequestError) and retriever_error.status == 404
    assert isinstance(search_error, tc.ClientRequestError) and search_error.status == 404


def test_async_api_key_against_the_real_app(service_settings_factory):
    group = tc.Group(
        id="g",
        target=tc.Target(query_id="demo-0001"),
        responses=[tc.Response("<answer>boots</answer>")],
    )

    async def go(key: str | None) -> Any:
        async with asgi_client(service_settings_factory(api_key="s3cret"), api_key=key) as client:
            assert await client.healthz()
            return await client.attribute([group])

    with pytest.raises(tc.AuthenticationError):
        asyncio.run(go(None))
    with pytest.raises(tc.AuthenticationError):
        asyncio.run(go("wrong"))
    assert len(asyncio.run(go("s3cret")).groups) == 1


def test_sync_client_over_loopback(live_service, demo_queries, smollm2_tokenizer):
    groups = groups_for(demo_queries, smollm2_tokenizer, 2)
    with tc.AttributionClient(live_service, max_groups_per_request=1) as client:
        assert client.healthz()
        ready = client.readyz()
        assert ready.ready and ready.cache_backend == "memory"
        (retriever,) = client.retrievers()
        assert retriever.name == "default" and retriever.dim == 64 and retriever.size > 0
        qid = sorted(demo_queries)[0]
        hits = client.search("default", demo_queries[qid], k=5)
        assert len(hits) == 5 and hits[0].score >= hits[-1].score
        result = client.attribute(groups)
        texts = [answer_text(demo_queries[qid]), answer_text("blue socks")]
        reward = client.reward(texts, ["prompt", "prompt"], [qid, qid])
    assert [g.id for g in result.groups] == [g.id for g in groups]
    # /reward is the NDCG of the whole query, as /attribute computes it
    assert reward.rewards[0] == pytest.approx(result.groups[0].responses[0].reward)
    assert reward.rewards[0] >= reward.rewards[1]
