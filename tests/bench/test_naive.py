"""bench/naive.py, the authors' cost shape (one model call per coalition, no dedupe, no
cache) on the production planner and games: it makes exactly that many calls and agrees with
the batched engine, for the retrieval game and for a reward model."""

from __future__ import annotations

import asyncio

import pytest

from bench.naive import attribute_naive
from service.engine import AttributionEngine, EncodeBatcher
from service.schemas import AttributeRequest
from tests.support.bodies import (
    numbers,
    request_body,
    reward_model_body,
    reward_model_engine,
    run,
)


def test_naive_mode_encodes_each_coalition_alone_and_agrees(
    registry, retriever, small_catalog, cache
):
    engine = AttributionEngine(registry, cache, batcher=EncodeBatcher(window_s=0))
    body = request_body(small_catalog)
    batched = run(engine, body)
    retriever.encoder.calls.clear()
    naive = asyncio.run(attribute_naive(engine, AttributeRequest.model_validate(body)))
    assert retriever.encoder.calls == [1] * naive.stats.coalitions
    assert naive.stats.cache_hits == 0
    for a, b in zip(numbers(batched), numbers(naive), strict=True):
        assert a[0] == pytest.approx(b[0], abs=1e-9)
        assert [v for v, _ in a[2]] == pytest.approx([v for v, _ in b[2]], abs=1e-9)


def test_naive_mode_agrees_and_sends_one_query_per_call(hash_registry, reward_server):
    server = reward_server()
    engine = reward_model_engine(hash_registry, server.url)
    batched = run(engine, reward_model_body(estimator="myerson"))
    server.reset()
    naive = asyncio.run(
        attribute_naive(
            engine, AttributeRequest.model_validate(reward_model_body(estimator="myerson"))
        )
    )
    assert set(server.batches) == {1} and len(server.batches) == naive.stats.coalitions
    for a, b in zip(batched.groups[0].responses, naive.groups[0].responses, strict=True):
        assert [s.value for s in a.segments] == pytest.approx([s.value for s in b.segments])
