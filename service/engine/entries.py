"""A request's deduplicated entries: the distinct (game, target, partial text) triples it
needs scored, grouped by game ("lane") and numbered across the request.

A Lane binds one game to the items it must evaluate, so every call into a game is typed by
that game's own target type (no cross-lane mix-ups, no casts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import numpy as np

from service.engine.games.base import Game
from service.engine.targets import RewardTarget, ScoringTarget
from service.engine.timing import StageTimer


class Keyed(Protocol):
    @property
    def key(self) -> str: ...


T = TypeVar("T", bound=Keyed)


class EntryCounter:
    """Hands out entry numbers: one per distinct item of the request (one per item without
    dedupe: the cost shape the naive benchmark measures)."""

    def __init__(self, dedupe: bool = True) -> None:
        self.dedupe = dedupe
        self.size = 0

    def next(self) -> int:
        self.size += 1
        return self.size - 1


@dataclass
class Lane(Generic[T]):
    """One game of a request and the distinct items it must evaluate; `positions[i]` is the
    entry number of `items[i]`."""

    game: Game[T]
    items: list[tuple[T, str]] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    _index: dict[tuple[str, str], int] = field(default_factory=dict)

    def add(self, counter: EntryCounter, target: T, text: str) -> int:
        key = (target.key, text)
        if counter.dedupe:
            found = self._index.get(key)
            if found is not None:
                return found
        position = counter.next()
        self._index[key] = position
        self.items.append((target, text))
        self.positions.append(position)
        return position

    def cache_keys(self) -> list[str]:
        return self.game.cache_keys(self.items)

    async def evaluate(self, which: Sequence[int], timer: StageTimer) -> tuple[np.ndarray, int]:
        """Raw scores of items `which` (indices into `items`) in one game call, and the
        number of model evaluations it took."""
        return await self.game.evaluate([self.items[i] for i in which], timer)

    def values(self, raw: np.ndarray) -> np.ndarray:
        return self.game.values(raw)


AnyLane = Lane[ScoringTarget] | Lane[RewardTarget]


@dataclass(frozen=True)
class Bound(Generic[T]):
    """A group's target and the lane of the game that scores it."""

    lane: Lane[T]
    target: T

    def add(self, counter: EntryCounter, text: str) -> int:
        """The entry number of `text` scored for this group's target."""
        return self.lane.add(counter, self.target, text)


GroupBinding = Bound[ScoringTarget] | Bound[RewardTarget]

__all__ = ["AnyLane", "Bound", "EntryCounter", "GroupBinding", "Lane"]
