"""In-memory stand-ins for the engine's seams, for unit tests of plan, entries and evaluate:
a game whose scores are a function the test chooses (every call recorded), and a binder that
binds groups to two such games without any lookup. Plain helpers (no fixtures)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from service.engine.entries import AnyLane, Bound, GroupBinding, Lane
from service.engine.games.base import RETRIEVAL, REWARD_MODEL
from service.engine.targets import RewardTarget, ScoringTarget
from service.engine.timing import StageTimer
from service.errors import OspoError, UnknownQuery
from service.schemas import AttributeRequest, GroupIn


def text_length(target: Any, text: str) -> float:
    return float(len(text))


class RecordingGame:
    """A game scoring each (target, text) with `score`; `values` scales raw scores by
    `scale`. `calls` holds the items of every evaluate call; with `error` set, evaluate
    raises it (a failing reward model)."""

    def __init__(
        self,
        lane: str = "retrieval",
        *,
        kind: str = RETRIEVAL,
        evaluates_empty: bool = False,
        score: Callable[[Any, str], float] = text_length,
        scale: float = 1.0,
        error: OspoError | None = None,
    ) -> None:
        self.lane = lane
        self.kind = kind
        self.evaluates_empty = evaluates_empty
        self.score = score
        self.scale = scale
        self.error = error
        self.calls: list[list[tuple[Any, str]]] = []

    def cache_keys(self, items: Sequence[tuple[Any, str]]) -> list[str]:
        return [f"{self.lane}\x00{target.key}\x00{text}" for target, text in items]

    async def evaluate(
        self, items: Sequence[tuple[Any, str]], timer: StageTimer
    ) -> tuple[np.ndarray, int]:
        self.calls.append(list(items))
        if self.error is not None:
            raise self.error
        return np.array([self.score(t, text) for t, text in items], dtype=np.float64), len(items)

    def values(self, raw: np.ndarray) -> np.ndarray:
        return raw * self.scale


class StaticBinder:
    """Binds retrieval groups to one RecordingGame (graded labels from `target.relevant`, or
    {query_id: 1.0}; query id "unknown" is refused like an unknown catalog query) and
    reward-model groups to another, without lookups. `prepared` counts prepare() calls."""

    def __init__(
        self,
        retrieval: RecordingGame | None = None,
        reward_model: RecordingGame | None = None,
    ) -> None:
        self.retrieval = Lane(retrieval or RecordingGame())
        self.reward_model = Lane(
            reward_model
            or RecordingGame("reward_model:rm", kind=REWARD_MODEL, evaluates_empty=True)
        )
        self._order: list[AnyLane] = []
        self.prepared = 0

    def prepare(self, request: AttributeRequest) -> None:
        self.prepared += 1

    def bind(self, g: int, group: GroupIn) -> GroupBinding:
        target = group.target
        if target.reward_model is not None:
            self._use(self.reward_model)
            return Bound(self.reward_model, RewardTarget.build(group.prompt or "", target.label))
        if target.query_id == "unknown":
            raise UnknownQuery("no such query", field=f"groups[{g}].target.query_id")
        labels = dict(target.relevant or {}) or {str(target.query_id): 1.0}
        self._use(self.retrieval)
        return Bound(self.retrieval, ScoringTarget.build(labels, group.pool))

    def _use(self, lane: Any) -> None:
        if not any(lane is used for used in self._order):
            self._order.append(lane)

    def lanes(self) -> list[AnyLane]:
        return list(self._order)
