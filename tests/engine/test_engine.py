"""The request path of AttributionEngine (service/engine/engine.py), end to end on the
hash-encoder retriever: dedupe, one cache round trip, one encode, one search, determinism,
estimator limits, the token-advantage invariants and /reward's scoring."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from service.attribution import estimate
from service.engine import AttributionEngine, EncodeBatcher, Limits
from service.errors import InvalidRequest, TooManyCoalitions, UnknownQuery, UnknownRetriever
from service.schemas import RewardRequest
from tests.support.bodies import numbers, request_body, run
from tests.support.registries import CountingCache


def test_one_cache_round_trip_one_encode_one_search(registry, retriever, small_catalog):
    cache = CountingCache()
    engine = AttributionEngine(registry, cache, batcher=EncodeBatcher(window_s=0))
    body = request_body(small_catalog)
    # The same response twice in another group: its partial queries must not be re-evaluated.
    body["groups"].append(
        {"target": {"query_id": "demo-0000"}, "responses": body["groups"][0]["responses"][:2]}
    )
    result = run(engine, body)
    stats = result.stats
    assert cache.gets == [stats.unique_queries]
    assert cache.sets == [stats.unique_queries]
    assert retriever.encoder.calls == [stats.encoded]
    assert retriever.searches == 1
    assert stats.unique_queries < stats.coalitions
    assert stats.encoded == stats.unique_queries and stats.cache_hits == 0
    assert set(result.stats.timings_ms.model_dump()) >= {
        "segment",
        "cache",
        "encode",
        "search",
        "score",
        "attribute",
        "total",
    }


def test_second_request_is_served_from_cache_with_identical_numbers(
    registry, retriever, small_catalog, cache
):
    engine = AttributionEngine(registry, cache, batcher=EncodeBatcher(window_s=0))
    body = request_body(small_catalog)
    first = run(engine, body)
    second = run(engine, body)
    assert numbers(first) == numbers(second)
    assert second.stats.cache_hits == second.stats.unique_queries > 0
    assert second.stats.encoded == 0
    assert len(retriever.encoder.calls) == 1


def test_cache_false_bypasses_the_cache(registry, small_catalog):
    cache = CountingCache()
    engine = AttributionEngine(registry, cache, batcher=EncodeBatcher(window_s=0))
    result = run(engine, request_body(small_catalog, cache=False))
    assert cache.gets == [] and cache.sets == []
    assert result.stats.cache_hits == 0


def test_same_request_same_seed_identical_numbers_without_cache(registry, small_catalog):
    body = request_body(small_catalog, cache=False, max_coalitions=8)
    first = run(AttributionEngine(registry, None, batcher=EncodeBatcher(window_s=0)), body)
    second = run(AttributionEngine(registry, None, batcher=EncodeBatcher(window_s=0)), body)
    assert numbers(first) == numbers(second)


def test_explain_values_reproduce_segment_values(registry, small_catalog, cache):
    engine = AttributionEngine(registry, cache, batcher=EncodeBatcher(window_s=0))
    for estimator in ("owen", "myerson", "shapley"):
        body = request_body(small_catalog, explain=True, estimator=estimator, max_coalitions=512)
        result = run(engine, body)
        for response in result.groups[0].responses:
            n = len(response.segments)
            if n < 2:
                continue
            table = {frozenset(c.members): c.value for c in response.coalitions}
            table.setdefault(frozenset(), 0.0)
            expected = estimate(estimator, n, table)
            assert [s.value for s in response.segments] == pytest.approx(list(expected), abs=1e-12)
            assert response.reward == pytest.approx(table[frozenset(range(n))])


@pytest.mark.parametrize("redistribution", ["prop", "rank"])
def test_token_advantages_average_to_the_sequence_advantage(
    registry, small_catalog, cache, redistribution
):
    engine = AttributionEngine(registry, cache, batcher=EncodeBatcher(window_s=0))
    result = run(engine, request_body(small_catalog, redistribution=redistribution, clip=None))
    for response in result.groups[0].responses:
        assert np.mean(response.token_advantages) == pytest.approx(response.advantage, abs=1e-9)


def test_uniform_gives_the_advantage_to_every_token(registry, small_catalog, cache):
    engine = AttributionEngine(registry, cache, batcher=EncodeBatcher(window_s=0))
    result = run(engine, request_body(small_catalog, redistribution="uniform", clip=None))
    for response in result.groups[0].responses:
        assert response.token_advantages == [response.advantage] * len(response.token_advantages)


def test_clip_bounds_token_advantages_by_the_request_std(registry, small_catalog, cache):
    engine = AttributionEngine(registry, cache, batcher=EncodeBatcher(window_s=0))
    result = run(engine, request_body(small_catalog, clip=0.5))
    advantages = np.array([r.advantage for r in result.groups[0].responses])
    bound = 0.5 * advantages.std()
    for response in result.groups[0].responses:
        assert max(abs(x) for x in response.token_advantages) <= bound + 1e-12


def test_single_segment_and_empty_responses(registry, retriever, small_catalog, cache):
    engine = AttributionEngine(registry, cache, batcher=EncodeBatcher(window_s=0))
    body = {
        "groups": [
            {
                "target": {"query_id": "demo-0000"},
                "responses": [
                    {"text": "lamp", "token_offsets": [[0, 2], [2, 4]]},
                    {"text": "   ", "token_offsets": [[0, 3]]},
                    {"text": "lamp", "reward": 0.25, "token_offsets": [[0, 4], [4, 4]]},
                ],
            }
        ],
        "options": {"explain": True},
    }
    result = run(engine, body)
    lamp, blank, given = result.groups[0].responses
    assert len(lamp.segments) == 1 and len(lamp.coalitions) == 1
    assert lamp.reward == pytest.approx(lamp.segments[0].value)
    assert blank.segments == [] and blank.reward == 0.0
    assert given.reward == 0.25 and given.coalitions == []
    for response in (lamp, blank, given):
        assert len(set(response.token_advantages)) == 1
    assert result.stats.coalitions == 1


def test_given_reward_replaces_v_of_n(registry, small_catalog, cache):
    engine = AttributionEngine(registry, cache, batcher=EncodeBatcher(window_s=0))
    body = request_body(small_catalog)
    for i, response in enumerate(body["groups"][0]["responses"]):
        response["reward"] = float(i)
    result = run(engine, body)
    assert [r.reward for r in result.groups[0].responses] == [0.0, 1.0, 2.0, 3.0]
    advantages = [r.advantage for r in result.groups[0].responses]
    assert advantages == sorted(advantages)


def test_relevant_target_and_pool(registry, small_catalog, cache):
    engine = AttributionEngine(registry, cache, batcher=EncodeBatcher(window_s=0))
    labels = small_catalog.labels["demo-0000"]
    body = request_body(small_catalog)
    body["groups"][0]["target"] = {"relevant": dict(labels)}
    by_labels = run(engine, body)
    body["groups"][0]["target"] = {"query_id": "demo-0000"}
    by_id = run(engine, body)
    assert numbers(by_labels) == numbers(by_id)
    assert by_id.stats.cache_hits == by_id.stats.unique_queries  # same labels, same cache keys
    body["groups"][0]["pool"] = [max(labels, key=labels.get)]
    pooled = run(engine, body)
    good = pooled.groups[0].responses[2]
    assert good.reward == pytest.approx(1.0)  # the only pool member is an exact match


def test_unknown_query_and_retriever(registry, small_catalog, cache):
    engine = AttributionEngine(registry, cache)
    body = request_body(small_catalog)
    body["groups"][0]["target"] = {"query_id": "nope"}
    with pytest.raises(UnknownQuery) as info:
        run(engine, body)
    assert info.value.field == "groups[0].target.query_id"
    with pytest.raises(UnknownRetriever):
        run(engine, request_body(small_catalog, retriever="other"))


def test_myerson_and_shapley_limits(registry, small_catalog, cache):
    engine = AttributionEngine(registry, cache, limits=Limits(max_shapley_segments=3))
    long_text = "red, green, blue, white, black, pink, grey, gold"
    body = {"groups": [{"target": {"query_id": "demo-0000"}, "responses": [{"text": long_text}]}]}
    body["options"] = {"estimator": "myerson", "max_coalitions": 10}
    with pytest.raises(TooManyCoalitions) as info:
        run(engine, body)
    assert info.value.field == "options.max_coalitions" and "max_coalitions" in info.value.message
    body["options"] = {"estimator": "shapley"}
    with pytest.raises(TooManyCoalitions) as info:
        run(engine, body)
    assert "max_shapley_segments=3" in info.value.message
    assert info.value.field == "groups[0].responses[0].text"


def test_limits_are_checked_before_any_work(registry, retriever, small_catalog, cache):
    engine = AttributionEngine(registry, cache, limits=Limits(max_groups=1))
    body = request_body(small_catalog)
    body["groups"] *= 2
    with pytest.raises(InvalidRequest) as info:
        run(engine, body)
    assert info.value.field == "groups" and "max_groups=1" in info.value.message
    assert retriever.encoder.calls == []


def test_seed_changes_sampled_coalitions(registry, small_catalog, cache):
    engine = AttributionEngine(registry, cache)
    # Coverage first: 4 segments keep ∅, N and the 4 singletons, and 1 of the 5 wider
    # windows is drawn per seed.
    body = request_body(small_catalog, explain=True, max_coalitions=7)
    plans = set()
    for seed in range(6):
        body["options"]["seed"] = seed
        response = run(engine, body).groups[0].responses[0]
        plans.add(tuple(tuple(c.members) for c in response.coalitions))
    assert len(plans) > 1


def test_reward_dedupes_and_caches(registry, retriever, small_catalog, cache):
    engine = AttributionEngine(registry, cache, batcher=EncodeBatcher(window_s=0))
    texts = ["silver aluminium desk lamp"] * 3 + [""]
    request = RewardRequest(query=texts, labels=["demo-0000"] * 4)
    scored = asyncio.run(engine.reward(request, "default", 50))
    scores, stats = scored.rewards, scored.stats
    assert scores[0] == scores[1] == scores[2] > 0 and scores[3] == 0.0
    assert stats.unique == 1 and stats.encoded == 1
    again = asyncio.run(engine.reward(request, "default", 50))
    assert again.rewards == scores and again.stats.cache_hits == 1
