"""The reward-model game: a reward model's score of (prompt, partial response) (the paper's
controlled-generation setting), optionally mapped to [0, 1] with configured bounds; v(∅) is
the score of the empty response or 0, as the model's `empty_value` says."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from service.cache import cache_key
from service.engine.games.base import REWARD_MODEL
from service.engine.targets import RewardTarget
from service.engine.timing import StageTimer
from service.rewardmodel.spec import score_to_value

if TYPE_CHECKING:
    from service.rewardmodel.base import RewardModel


class RewardModelGame:
    """A reward model's score of (prompt, partial response), mapped with its score bounds."""

    kind = REWARD_MODEL

    def __init__(self, model: RewardModel) -> None:
        self.model = model
        self.lane = f"{REWARD_MODEL}:{model.name}"
        self.evaluates_empty = model.spec.empty_value == "score"

    def cache_keys(self, items: Sequence[tuple[RewardTarget, str]]) -> list[str]:
        model = self.model
        # k=0 never occurs for retrieval (k >= 1), so the key spaces cannot meet.
        return [
            cache_key(
                retriever=self.lane,
                encoder=f"{model.spec.backend}:{model.identity}",
                index_version=model.version,
                k=0,
                target=target.key,
                pool="",
                query=text,
            )
            for target, text in items
        ]

    async def evaluate(
        self, items: Sequence[tuple[RewardTarget, str]], timer: StageTimer
    ) -> tuple[np.ndarray, int]:
        with timer.stage("score"):
            raw = await self.model.score(
                [target.prompt for target, _ in items],
                [text for _, text in items],
                [target.label for target, _ in items],
            )
        return np.asarray(raw, dtype=np.float64), len(items)

    def values(self, raw: np.ndarray) -> np.ndarray:
        return score_to_value(raw, self.model.spec.score_bounds)


__all__ = ["RewardModelGame"]
