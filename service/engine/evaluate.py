"""Evaluation: a request's distinct entries -> coalition values.

One cache round trip for every lane's keys, each game's misses in one evaluation (one
batched encode + search for retrieval, one scoring call for a reward model), one cache write
of the new scores, then each game's raw -> value mapping. Results never depend on where a
score came from. With `tolerate_failures` (options.errors = "group"), a game that fails (a
reward model answering 502/504) fails only the groups it scores: its lane is reported in
`Evaluation.failed` and nothing of it is cached.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from service.cache import ScoreCache
from service.engine.entries import AnyLane
from service.engine.threads import run_sync
from service.engine.timing import StageTimer
from service.errors import OspoError


@dataclass
class EvaluationStats:
    unique: int = 0
    cache_hits: int = 0
    encoded: int = 0
    evaluated: int = 0


@dataclass
class Evaluation:
    values: np.ndarray  # value of every entry (NaN for the entries of a failed lane)
    stats: EvaluationStats
    failed: dict[str, OspoError] = field(default_factory=dict)  # lane -> why it failed


async def evaluate(
    lanes: Sequence[AnyLane],
    size: int,
    cache: ScoreCache | None,
    timer: StageTimer,
    *,
    tolerate_failures: bool = False,
) -> Evaluation:
    """Values of entries 0..size-1 of `lanes` (cache None: evaluate everything)."""
    stats = EvaluationStats(unique=size)
    raw = np.zeros(size, dtype=np.float64)
    failed: dict[str, OspoError] = {}
    if not size:
        return Evaluation(raw, stats, failed)
    keys: list[str] = [""] * size
    missing = np.ones(size, dtype=bool)
    if cache is not None:
        with timer.stage("cache"):
            keys = await run_sync(_cache_keys, lanes, size)
            cached = await run_sync(cache.get_many, keys)
        for position, value in enumerate(cached):
            if value is not None:
                raw[position] = value
                missing[position] = False
        stats.cache_hits = size - int(missing.sum())
    fresh: dict[str, float] = {}
    for lane in lanes:
        todo = [i for i, position in enumerate(lane.positions) if missing[position]]
        if not todo:
            continue
        try:
            scored, evaluated = await lane.evaluate(todo, timer)
        except OspoError as exc:
            if not tolerate_failures:
                raise
            failed[lane.game.lane] = exc
            raw[np.asarray(lane.positions, dtype=np.int64)] = np.nan
            continue
        stats.encoded += evaluated
        for i, value in zip(todo, scored.tolist(), strict=True):
            position = lane.positions[i]
            raw[position] = value
            if cache is not None:
                fresh[keys[position]] = float(value)
    if cache is not None and fresh:
        with timer.stage("cache"):
            await run_sync(cache.set_many, fresh)
    values = raw.copy()
    for lane in lanes:
        positions = np.asarray(lane.positions, dtype=np.int64)
        if positions.size and lane.game.lane not in failed:
            values[positions] = lane.values(raw[positions])
    return Evaluation(values, stats, failed)


def _cache_keys(lanes: Sequence[AnyLane], size: int) -> list[str]:
    keys = [""] * size
    for lane in lanes:
        for position, key in zip(lane.positions, lane.cache_keys(), strict=True):
            keys[position] = key
    return keys


__all__ = ["Evaluation", "EvaluationStats", "evaluate"]
