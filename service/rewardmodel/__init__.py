"""Reward models as OSPO value functions: remote ones speaking OpenRLHF's remote reward-model
protocol, and in-process Hugging Face sequence-classification models. The engine's
reward-model game (service.engine.games) scores partial responses with them."""

from __future__ import annotations

from service.rewardmodel.base import RewardModel, RewardModelError, UnknownRewardModel
from service.rewardmodel.registry import RewardModelRegistry, build_reward_model
from service.rewardmodel.spec import EMPTY_VALUES, RewardModelSpec, score_to_value

__all__ = [
    "EMPTY_VALUES",
    "RewardModel",
    "RewardModelError",
    "RewardModelRegistry",
    "RewardModelSpec",
    "UnknownRewardModel",
    "build_reward_model",
    "score_to_value",
]
