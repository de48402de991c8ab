"""RemoteRewardModel against a loopback reward server: OpenRLHF's request shape, batching,
concurrency-safe ordering, retries, and errors that name the backend (502) or time out (504)."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from service.rewardmodel import RewardModelError, RewardModelSpec
from service.rewardmodel.remote import RemoteRewardModel


def model_for(url: str, **overrides) -> RemoteRewardModel:
    values = {"name": "sentiment", "url": url, "timeout_s": 5.0, "retries": 0, **overrides}
    return RemoteRewardModel(RewardModelSpec(**values))


def score(model: RemoteRewardModel, prompts, responses, labels=None) -> np.ndarray:
    async def go() -> np.ndarray:
        try:
            return await model.score(prompts, responses, labels or [""] * len(responses))
        finally:
            await model.aclose()

    return asyncio.run(go())


def test_sends_openrlhf_batches_and_keeps_the_order(reward_server, reward_logit):
    server = reward_server()
    model = model_for(server.url, batch_size=3, concurrency=2)
    responses = [f"response {i} is {'great ' * i}" for i in range(7)]
    prompts = ["Review: "] * 7
    labels = [f"label-{i}" for i in range(7)]
    scores = score(model, prompts, responses, labels)
    assert scores.tolist() == [reward_logit(r) for r in responses]
    assert sorted(server.batches) == [1, 3, 3]
    for body in server.bodies:
        assert set(body) == {"query", "prompts", "labels"}
        for query, prompt, label in zip(
            body["query"], body["prompts"], body["labels"], strict=True
        ):
            i = int(query.split()[2])
            assert query == prompt + responses[i] and label == labels[i]


def test_accepts_scores_instead_of_rewards(reward_server, reward_logit):
    server = reward_server("scores")
    scores = score(model_for(server.url), ["p "], ["a wonderful day"])
    assert scores.tolist() == [reward_logit("a wonderful day")]


@pytest.mark.parametrize("retries", [0, 2])
def test_server_errors_are_retried_then_502_naming_the_backend(reward_server, retries):
    server = reward_server("error")
    with pytest.raises(RewardModelError) as info:
        score(model_for(server.url, retries=retries), ["p"], ["x"])
    error = info.value
    assert error.status == 502 and error.code == "backend_error"
    assert "'sentiment'" in error.message and server.url in error.message
    assert "HTTP 500" in error.message
    assert server.attempts == retries + 1


def test_a_hanging_server_gives_504(reward_server):
    server = reward_server("slow", delay_s=5.0)
    started = time.perf_counter()
    with pytest.raises(RewardModelError) as info:
        score(model_for(server.url, timeout_s=0.3, retries=1), ["p"], ["x"])
    assert info.value.status == 504 and info.value.code == "backend_timeout"
    assert "'sentiment'" in info.value.message and "timeout_s=0.3" in info.value.message
    assert server.attempts == 2
    assert time.perf_counter() - started < 3.0


@pytest.mark.parametrize(
    ("mode", "fragment"), [("bad", "no 'rewards'"), ("short", "answered 1 rewards for 2")]
)
def test_malformed_answers_are_502_without_retry(reward_server, mode, fragment):
    server = reward_server(mode)
    with pytest.raises(RewardModelError) as info:
        score(model_for(server.url, retries=3), ["p", "p"], ["x", "y"])
    assert info.value.status == 502 and fragment in info.value.message
    assert server.attempts == 1


def test_nobody_listening_is_502():
    # Port 9 (discard) on loopback: nothing listens there in the test environment.
    with pytest.raises(RewardModelError) as info:
        score(model_for("http://127.0.0.1:9/score"), ["p"], ["x"])
    assert info.value.status == 502 and "request failed" in info.value.message


def test_empty_batch_makes_no_request(reward_server):
    server = reward_server()
    assert score(model_for(server.url), [], []).shape == (0,)
    assert server.attempts == 0
