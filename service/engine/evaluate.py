"""Evaluation: a request's distinct entries -> coalition values.

One cache round trip for every lane's keys, each game's misses in one evaluation (one
batched encode + search for retrieval, one scoring call for a reward model), one cache write
of the new scores, then each game's raw -> value mapping. Results never depend on where a
score came from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from service.cache import ScoreCache
from service.engine.entries import AnyLane
from service.engine.threads import run_sync
from service.engine.timing import StageTimer


@dataclass
class EvaluationStats:
    unique: int = 0
    cache_hits: int = 0
    encoded: int = 0
    evaluated: int = 0


async def evaluate(
    lanes: Sequence[AnyLane], size: int, cache: ScoreCache | None, timer: StageTimer
) -> tuple[np.ndarray, EvaluationStats]:
    """Values of entries 0..size-1 of `lanes` (cache None: evaluate everything)."""
    stats = EvaluationStats(unique=size)
    raw = np.zeros(size, dtype=np.float64)
    if not size:
        return raw, stats
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
        scored, evaluated = await lane.evaluate(todo, timer)
        stats.encoded += evaluated
        for i, value in zip(todo, scored.tolist(), strict=True):
            raw[lane.positions[i]] = value
        if cache is not None:
            for position in lane.positions:
                if missing[position]:
                    fresh[keys[position]] = float(raw[position])
    if cache is not None and fresh:
        with timer.stage("cache"):
            await run_sync(cache.set_many, fresh)
    values = raw.copy()
    for lane in lanes:
        positions = np.asarray(lane.positions, dtype=np.int64)
        if positions.size:
            values[positions] = lane.values(raw[positions])
    return values, stats


def _cache_keys(lanes: Sequence[AnyLane], size: int) -> list[str]:
    keys = [""] * size
    for lane in lanes:
        for position, key in zip(lane.positions, lane.cache_keys(), strict=True):
            keys[position] = key
    return keys


__all__ = ["EvaluationStats", "evaluate"]
