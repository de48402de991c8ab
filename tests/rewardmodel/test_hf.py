"""The in-process backend: a tiny randomly initialised BERT sequence classifier (built from a
config with the packaged MiniLM tokenizer, saved to disk, no download) scores batches with
finite, deterministic first logits, and plays the reward-model game in the engine."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from service.engine import AttributionEngine, EncodeBatcher
from service.rewardmodel import RewardModelRegistry, RewardModelSpec
from service.rewardmodel.hf import HFRewardModel
from service.schemas import AttributeRequest

TEXTS = [
    "I love it.",
    "It was terrible.",
    "",
    "A much longer sentence about the room and the view.",
]


def test_scores_are_finite_batched_and_deterministic(tiny_reward_model_dir):
    model = HFRewardModel(
        RewardModelSpec(name="tiny", model=str(tiny_reward_model_dir), batch_size=3)
    )
    prompts = ["Review: "] * len(TEXTS)
    labels = [""] * len(TEXTS)
    first = asyncio.run(model.score(prompts, TEXTS, labels))
    second = asyncio.run(model.score(prompts, TEXTS, labels))
    assert first.shape == (len(TEXTS),) and first.dtype == np.float64
    assert np.isfinite(first).all()
    assert np.array_equal(first, second)
    one_by_one = [float(model.score_texts(["Review: " + text])[0]) for text in TEXTS]
    assert first.tolist() == pytest.approx(one_by_one, abs=1e-5)  # padding does not leak
    assert len(set(np.round(first, 6))) > 1  # a random model still tells texts apart
    again = HFRewardModel(RewardModelSpec(name="tiny", model=str(tiny_reward_model_dir)))
    assert again.version == model.version and model.version.startswith("cfg-")
    pinned = RewardModelSpec(name="tiny", model=str(tiny_reward_model_dir), version="v1")
    assert HFRewardModel(pinned).version == "v1"


def test_plays_the_reward_model_game(hash_registry, tiny_reward_model_dir):
    spec = RewardModelSpec(name="tiny", model=str(tiny_reward_model_dir), score_bounds=(-5.0, 10.0))
    models = RewardModelRegistry.load([spec])
    engine = AttributionEngine(
        hash_registry, None, batcher=EncodeBatcher(window_s=0), reward_models=models
    )
    body = {
        "groups": [
            {
                "prompt": "Review: ",
                "target": {"reward_model": "tiny"},
                "responses": [
                    {"text": "I love it. It was terrible. The view was fine."},
                    {"text": "The room was small."},
                ],
            }
        ],
        "options": {"estimator": "shapley", "explain": True},
    }
    result = asyncio.run(engine.attribute(AttributeRequest.model_validate(body)))
    response = result.groups[0].responses[0]
    assert len(response.segments) == 3
    values = [s.value for s in response.segments]
    assert np.isfinite(values).all() and 0.0 <= response.reward <= 1.0
    v_empty = next(c.value for c in response.coalitions if not c.members)
    assert sum(values) == pytest.approx(response.reward - v_empty, abs=1e-9)
    assert result.model.reward_models[0].backend == "hf"
