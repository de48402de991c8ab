"""The reward-model game (service/engine/games/reward_model.py) in the engine, against the
loopback reward server: credit lands on the rewarded sentence, efficiency (Σφ = v(N) - v(∅))
for myerson/shapley, every distinct partial response is sent once per request and then served
from the cache, sentence segments by default, and refusals that name the field."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.attribution import estimate, segment
from service.cache import MemoryScoreCache
from service.engine import AttributionEngine
from service.errors import InvalidRequest
from service.rewardmodel import UnknownRewardModel
from tests.support.bodies import REVIEWS, reward_model_body, reward_model_engine, run


def empty_value(response) -> float:
    return next((c.value for c in response.coalitions if not c.members), 0.0)


@pytest.mark.parametrize("estimator", ["owen", "myerson", "shapley"])
def test_the_rewarded_sentence_gets_the_largest_credit(
    hash_registry, reward_server, estimator, reward_logit
):
    server = reward_server()
    result = run(
        reward_model_engine(hash_registry, server.url), reward_model_body(estimator=estimator)
    )
    first = result.groups[0].responses[0]
    assert [s.text for s in first.segments] == [
        "The hotel was near the station.",
        "The breakfast was delightful, I love it.",
        "The room was small.",
    ]
    values = [s.value for s in first.segments]
    credits = [s.credit for s in first.segments]
    assert int(np.argmax(values)) == 1 and int(np.argmax(credits)) == 1
    assert first.reward == pytest.approx(reward_logit(REVIEWS[0]))
    # The higher-reward response gets the higher advantage; token advantages keep its mean.
    rewards = [r.reward for r in result.groups[0].responses]
    advantages = [r.advantage for r in result.groups[0].responses]
    assert np.argsort(rewards).tolist() == np.argsort(advantages).tolist()
    if estimator != "owen":
        # The bag-of-words logit is additive over sentences: exact values are the sentences'
        # own weights (the bias sits in v(∅) and cancels).
        expected = [reward_logit(s.text) - reward_logit("") for s in first.segments]
        assert values == pytest.approx(expected, abs=1e-9)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    sentences=st.lists(
        st.lists(
            st.sampled_from(["delightful", "terrible", "great", "awful", "room", "view", "love"]),
            min_size=1,
            max_size=4,
        ),
        min_size=1,
        max_size=5,
    ),
    estimator=st.sampled_from(["myerson", "shapley"]),
    empty=st.sampled_from(["score", "zero"]),
    bounded=st.booleans(),
)
def test_efficiency_sum_of_values_is_v_n_minus_v_empty(
    hash_registry, reward_server, reward_logit, sentences, estimator, empty, bounded
):
    server = reward_server()
    bounds = (-5.0, 10.0) if bounded else None
    engine = reward_model_engine(hash_registry, server.url, empty_value=empty, score_bounds=bounds)
    text = " ".join(" ".join(words).capitalize() + "." for words in sentences)
    result = run(engine, reward_model_body([text, "Fine."], estimator=estimator))
    response = result.groups[0].responses[0]
    assert len(response.segments) == len(sentences)
    raw = reward_logit(text)
    expected_reward = min(max((raw + 5) / 15, 0.0), 1.0) if bounded else raw
    assert response.reward == pytest.approx(expected_reward, abs=1e-12)
    v_empty = empty_value(response)
    if empty == "zero":
        assert v_empty == 0.0
    else:
        raw_empty = reward_logit("")
        assert v_empty == pytest.approx(
            min(max((raw_empty + 5) / 15, 0.0), 1.0) if bounded else raw_empty
        )
    total = sum(s.value for s in response.segments)
    assert total == pytest.approx(response.reward - v_empty, abs=1e-9)


def test_each_distinct_partial_response_is_sent_once_then_cached(hash_registry, reward_server):
    server = reward_server()
    cache = MemoryScoreCache(10_000, None)
    engine = reward_model_engine(hash_registry, server.url, cache=cache, batch_size=8)
    body = reward_model_body([*REVIEWS, REVIEWS[0]], estimator="myerson")
    # A second group with the same prompt and overlapping responses, and one with another
    # prompt: partial responses repeat across responses and groups.
    repeat = {**body["groups"][0], "id": "g1", "responses": body["groups"][0]["responses"][:2]}
    other = {**body["groups"][0], "id": "g2", "prompt": "Another prompt. "}
    body["groups"] += [repeat, other]
    result = run(engine, body)
    stats = result.stats
    assert stats.unique_queries < stats.coalitions
    assert set(server.seen.values()) == {1}
    assert len(server.seen) == stats.unique_queries == stats.encoded
    assert len(server.batches) == math.ceil(stats.unique_queries / 8)
    assert {q for q in server.seen if q.startswith("Another prompt. ")}
    server.reset()
    again = run(engine, body)
    assert server.attempts == 0
    assert again.stats.cache_hits == again.stats.unique_queries
    first = [[s.value for s in r.segments] for g in result.groups for r in g.responses]
    second = [[s.value for s in r.segments] for g in again.groups for r in g.responses]
    assert first == second


def test_cache_keys_include_the_model_version(hash_registry, reward_server):
    server = reward_server()
    cache = MemoryScoreCache(10_000, None)
    run(
        reward_model_engine(hash_registry, server.url, cache=cache, version="v1"),
        reward_model_body(),
    )
    server.reset()
    result = run(
        reward_model_engine(hash_registry, server.url, cache=cache, version="v2"),
        reward_model_body(),
    )
    assert result.stats.cache_hits == 0 and server.attempts > 0


def test_explain_reproduces_the_values_from_v_minus_v_empty(hash_registry, reward_server):
    server = reward_server()
    engine = reward_model_engine(hash_registry, server.url, score_bounds=(-5.0, 10.0))
    for estimator in ("owen", "myerson", "shapley"):
        result = run(engine, reward_model_body(estimator=estimator))
        for response in result.groups[0].responses:
            n = len(response.segments)
            table = {frozenset(c.members): c.value for c in response.coalitions}
            v_empty = table[frozenset()]
            shifted = {members: value - v_empty for members, value in table.items()}
            expected = estimate(estimator, n, shifted)
            assert [s.value for s in response.segments] == pytest.approx(list(expected))
            assert response.reward == table[frozenset(range(n))]


def test_segmenter_defaults_to_sentence_unless_set(hash_registry, reward_server):
    server = reward_server()
    engine = reward_model_engine(hash_registry, server.url)
    text = "The breakfast was delightful and the staff were great with kids. The view was plain."
    default = run(engine, reward_model_body([text]))
    assert len(default.groups[0].responses[0].segments) == 2
    assert [s.text for s in default.groups[0].responses[0].segments] == [
        text[s:e] for s, e in segment(text, "sentence")
    ]
    phrase = run(engine, reward_model_body([text], segmenter="phrase"))
    assert [s.text for s in phrase.groups[0].responses[0].segments] == [
        text[s:e] for s, e in segment(text, "phrase")
    ]
    assert len(phrase.groups[0].responses[0].segments) > 2


def test_span_limits_the_attributed_text(hash_registry, reward_server):
    server = reward_server()
    engine = reward_model_engine(hash_registry, server.url)
    text = "<think>I love it.</think> The view was plain. The food was terrible."
    body = reward_model_body([text])
    start = text.index(" The view")
    body["groups"][0]["responses"][0]["span"] = [start, len(text)]
    response = run(engine, body).groups[0].responses[0]
    assert [s.text for s in response.segments] == ["The view was plain.", "The food was terrible."]
    assert all("think" not in q for q in server.seen)


def test_mixed_request_keeps_retrieval_numbers(hash_registry, reward_server):
    server = reward_server()
    engine = reward_model_engine(hash_registry, server.url, cache=MemoryScoreCache(10_000, None))
    query_id = next(iter(hash_registry.get("default").catalog.labels))
    retrieval_group = {
        "id": "search",
        "target": {"query_id": query_id},
        "responses": [{"text": "<answer>red cotton shirt for men, size m</answer>"}, {"text": "x"}],
    }
    alone = run(engine, {"groups": [retrieval_group], "options": {"cache": False}})
    body = reward_model_body()
    body["groups"].append(retrieval_group)
    body["options"]["cache"] = False
    mixed = run(engine, body)
    search = mixed.groups[1].responses
    assert [(r.reward, [s.value for s in r.segments]) for r in search] == [
        (r.reward, [s.value for s in r.segments]) for r in alone.groups[0].responses
    ]
    assert mixed.model.retriever == "default"
    assert [m.name for m in mixed.model.reward_models] == ["sentiment"]
    assert alone.model.reward_models is None
    only_rm = run(engine, reward_model_body())
    assert only_rm.model.retriever == "" and only_rm.model.reward_models[0].version


def test_empty_and_single_sentence_responses(hash_registry, reward_server, reward_logit):
    server = reward_server()
    engine = reward_model_engine(hash_registry, server.url)
    result = run(engine, reward_model_body(["   ", "I love it.", "Fine. Great."]))
    blank, single, given_reward = result.groups[0].responses
    assert blank.segments == [] and blank.reward == pytest.approx(reward_logit(""))
    assert single.reward == pytest.approx(reward_logit("I love it."))
    assert single.segments[0].value == pytest.approx(reward_logit("I love it.") - reward_logit(""))
    body = reward_model_body(["I love it."])
    body["groups"][0]["responses"][0]["reward"] = 0.5
    zero = reward_model_engine(hash_registry, server.url, empty_value="zero")
    response = run(zero, body).groups[0].responses[0]
    assert response.reward == 0.5 and response.segments[0].value == 0.5


def test_labels_reach_the_remote_model(hash_registry, reward_server):
    server = reward_server()
    body = reward_model_body(["Great."])
    body["groups"][0]["target"]["label"] = "positive"
    run(reward_model_engine(hash_registry, server.url), body)
    assert {label for b in server.bodies for label in b["labels"]} == {"positive"}


def test_refusals_name_the_field(hash_registry, reward_server):
    server = reward_server()
    engine = reward_model_engine(hash_registry, server.url)
    body = reward_model_body()
    del body["groups"][0]["prompt"]
    with pytest.raises(InvalidRequest) as info:
        run(engine, body)
    assert info.value.field == "groups[0].prompt" and info.value.status == 422
    assert run(engine, reward_model_body(prompt="")).groups[0].responses[0].reward is not None
    body = reward_model_body()
    body["groups"][0]["pool"] = ["P1"]
    with pytest.raises(InvalidRequest) as info:
        run(engine, body)
    assert info.value.field == "groups[0].pool"
    body = reward_model_body()
    body["groups"][0]["target"] = {"reward_model": "nope"}
    with pytest.raises(UnknownRewardModel) as info:
        run(engine, body)
    assert info.value.status == 404 and info.value.field == "groups[0].target.reward_model"
    assert "sentiment" in info.value.message
    without = AttributionEngine(hash_registry, None)
    with pytest.raises(UnknownRewardModel):
        run(without, reward_model_body())
    assert server.attempts == 1  # only the prompt="" request reached the model
