"""The Game protocol: what a partial text is worth for a target.

A game evaluates a batch of distinct (target, partial text) items in one go and returns raw
scores, which the engine caches; `values` then maps raw scores to coalition values. A game is
generic over its target type (ScoringTarget for retrieval, RewardTarget for reward models),
so the planner and the evaluator pass each game only items it understands.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

import numpy as np

from service.engine.timing import StageTimer

RETRIEVAL = "retrieval"
REWARD_MODEL = "reward_model"

TargetT = TypeVar("TargetT", contravariant=True)


class Game(Protocol[TargetT]):
    """A value function over partial texts for targets of type TargetT."""

    @property
    def lane(self) -> str:
        """Identity of the game within a request: items are deduplicated per lane."""
        ...

    @property
    def kind(self) -> str:
        """RETRIEVAL or REWARD_MODEL: picks the default segmenter and the attributed text."""
        ...

    @property
    def evaluates_empty(self) -> bool:
        """Whether v(∅) is evaluated (the empty text is an item) instead of fixed to 0."""
        ...

    def cache_keys(self, items: Sequence[tuple[TargetT, str]]) -> list[str]:
        """The score-cache key of each (target, text) item."""
        ...

    async def evaluate(
        self, items: Sequence[tuple[TargetT, str]], timer: StageTimer
    ) -> tuple[np.ndarray, int]:
        """Raw scores of distinct items (what the cache stores) and the number of model
        evaluations that took (texts encoded, partial responses scored)."""
        ...

    def values(self, raw: np.ndarray) -> np.ndarray:
        """Coalition values of raw scores."""
        ...


__all__ = ["RETRIEVAL", "REWARD_MODEL", "Game", "TargetT"]
