"""What the engine needs from a reward model, and the errors a reward model raises.

A reward model scores (prompt, response[, label]) triples with one float each; the engine
deduplicates, caches and maps those raw scores to coalition values. Backend failures are
RewardModelErrors (502, or 504 on a timeout) whose message names the model and its endpoint,
so a training job's log says which dependency failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from service.errors import BackendError, UnknownRewardModel
from service.rewardmodel.spec import RewardModelSpec


class RewardModelError(BackendError):
    """A reward model failed (502) or timed out (504); `model` is its configured name."""

    def __init__(self, model: str, message: str, *, timeout: bool = False) -> None:
        super().__init__(message, timeout=timeout)
        self.model = model


@runtime_checkable
class RewardModel(Protocol):
    spec: RewardModelSpec

    @property
    def name(self) -> str:
        """The configured name (what `target.reward_model` selects)."""
        ...

    @property
    def version(self) -> str:
        """Part of every cache key: a changed model must never be answered from the cache."""
        ...

    @property
    def identity(self) -> str:
        """Where the scores come from (URL or model path), also part of the cache key."""
        ...

    async def score(
        self, prompts: Sequence[str], responses: Sequence[str], labels: Sequence[str]
    ) -> np.ndarray:
        """Raw scores (float64, finite) of each (prompt, response, label), in order; all of a
        request's partial responses arrive in one call, the model batches them itself."""
        ...

    async def aclose(self) -> None:
        """Release connections and memory; the model must not be used afterwards."""
        ...


__all__ = ["RewardModel", "RewardModelError", "UnknownRewardModel"]
