"""service/engine/evaluate.py on two in-memory games: one cache get for every lane's keys,
each lane's misses in one game call, one cache write of the new scores, each game's
raw -> value mapping; a failing game fails only its own lane under errors="group"."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import numpy as np
import pytest

from service.engine.entries import EntryCounter, Lane
from service.engine.evaluate import Evaluation, evaluate
from service.engine.targets import RewardTarget, ScoringTarget
from service.engine.timing import StageTimer
from service.errors import BackendError
from tests.support.games import RecordingGame
from tests.support.registries import CountingCache

BOOTS = ScoringTarget.build({"P1": 1.0}, None)
PROMPT = RewardTarget.build("Review: ", None)


def two_lanes(
    error: BackendError | None = None,
) -> tuple[list[Lane[Any]], int, RecordingGame, RecordingGame]:
    """A retrieval-like lane (values = raw) with entries 0, 2, 4 and a reward-model-like lane
    (values = raw / 10, failing with `error`) with entries 1, 3."""
    search = RecordingGame("retrieval")
    model = RecordingGame("reward_model:rm", evaluates_empty=True, scale=0.1, error=error)
    counter = EntryCounter()
    lanes: list[Lane[Any]] = [Lane(search), Lane(model)]
    lanes[0].add(counter, BOOTS, "a")
    lanes[1].add(counter, PROMPT, "")
    lanes[0].add(counter, BOOTS, "bb")
    lanes[1].add(counter, PROMPT, "dddd")
    lanes[0].add(counter, BOOTS, "ccc")
    return lanes, counter.size, search, model


def run(lanes: list[Lane[Any]], size: int, cache: Any, **kwargs: Any) -> Evaluation:
    return asyncio.run(evaluate(lanes, size, cache, StageTimer(), **kwargs))


def test_one_cache_round_trip_for_two_lanes_then_all_hits() -> None:
    lanes, size, search, model = two_lanes()
    cache = CountingCache()
    first = run(lanes, size, cache)
    assert cache.gets == [5] and cache.sets == [5]  # one get and one set for both lanes
    assert len(search.calls) == 1 and len(model.calls) == 1  # one call per game
    assert [text for _, text in search.calls[0]] == ["a", "bb", "ccc"]
    assert [text for _, text in model.calls[0]] == ["", "dddd"]
    # Entry order, each lane's own mapping: retrieval raw, the reward model raw / 10.
    assert first.values.tolist() == pytest.approx([1.0, 0.0, 2.0, 0.4, 3.0])
    assert (first.stats.unique, first.stats.cache_hits, first.stats.encoded) == (5, 0, 5)
    assert first.failed == {}
    # The cache holds raw scores, so a second evaluation maps them again to the same values.
    again = run(lanes, size, cache)
    assert cache.gets == [5, 5] and cache.sets == [5]  # nothing new to write
    assert len(search.calls) == 1 and len(model.calls) == 1
    assert again.values.tolist() == first.values.tolist()
    assert (again.stats.cache_hits, again.stats.encoded) == (5, 0)


def test_only_misses_are_evaluated_and_written() -> None:
    lanes, size, search, model = two_lanes()
    cache = CountingCache()
    keys = lanes[0].cache_keys()
    cache.inner.set_many({keys[1]: 42.0})  # "bb" was scored before (by another request)
    result = run(lanes, size, cache)
    assert [text for _, text in search.calls[0]] == ["a", "ccc"]
    assert cache.sets == [4]
    assert result.values[2] == 42.0 and result.stats.cache_hits == 1
    assert result.stats.encoded == 4


def test_without_a_cache_everything_is_evaluated() -> None:
    lanes, size, search, model = two_lanes()
    result = run(lanes, size, None)
    assert len(search.calls[0]) == 3 and len(model.calls[0]) == 2
    assert result.stats.cache_hits == 0 and result.stats.encoded == 5


def test_a_failing_game_fails_only_its_lane_and_nothing_of_it_is_cached() -> None:
    failure = BackendError("reward model 'rm' answered 500")
    lanes, size, search, model = two_lanes(error=failure)
    cache = CountingCache()
    result = run(lanes, size, cache, tolerate_failures=True)
    assert result.failed == {"reward_model:rm": failure}
    assert math.isnan(result.values[1]) and math.isnan(result.values[3])
    assert result.values[[0, 2, 4]].tolist() == [1.0, 2.0, 3.0]
    assert cache.sets == [3]  # the retrieval scores only
    assert set(cache.inner.get_many(lanes[1].cache_keys())) == {None}
    with pytest.raises(BackendError):
        run(lanes, size, CountingCache())


def test_nothing_to_evaluate_touches_nothing() -> None:
    cache = CountingCache()
    result = run([Lane(RecordingGame())], 0, cache)
    assert cache.gets == [] and cache.sets == []
    assert result.values.shape == (0,) and result.stats.unique == 0
    assert isinstance(result.values, np.ndarray)
