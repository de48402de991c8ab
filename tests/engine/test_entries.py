"""service/engine/entries.py: a Lane keeps one game's distinct (target, text) items and their
request-wide entry numbers; an EntryCounter numbers entries across lanes; a Bound adds texts
for its group's target."""

from __future__ import annotations

import asyncio

from service.engine.entries import Bound, EntryCounter, Lane
from service.engine.targets import RewardTarget, ScoringTarget
from service.engine.timing import StageTimer
from tests.support.games import RecordingGame

BOOTS = ScoringTarget.build({"P1": 1.0}, None)
BOOTS_REORDERED = ScoringTarget.build({"P1": 1}, None)  # the same labels, so the same key
BOOTS_POOLED = ScoringTarget.build({"P1": 1.0}, ["P1", "P2"])


def test_a_lane_numbers_distinct_items_and_returns_the_first_number_for_repeats() -> None:
    counter = EntryCounter()
    lane = Lane(RecordingGame())
    assert lane.add(counter, BOOTS, "red boots") == 0
    assert lane.add(counter, BOOTS, "boots") == 1
    assert lane.add(counter, BOOTS_REORDERED, "red boots") == 0  # same target key and text
    assert lane.add(counter, BOOTS_POOLED, "red boots") == 2  # a pool changes the target
    assert lane.add(counter, BOOTS, "boots") == 1
    assert counter.size == 3
    assert lane.items == [(BOOTS, "red boots"), (BOOTS, "boots"), (BOOTS_POOLED, "red boots")]
    assert lane.positions == [0, 1, 2]


def test_numbers_are_request_wide_across_lanes() -> None:
    counter = EntryCounter()
    search = Lane(RecordingGame("retrieval"))
    model = Lane(RecordingGame("reward_model:rm", evaluates_empty=True))
    prompt = RewardTarget.build("Review: ", None)
    assert search.add(counter, BOOTS, "red boots") == 0
    assert model.add(counter, prompt, "red boots") == 1  # same text, other game: new entry
    assert model.add(counter, prompt, "") == 2
    assert search.add(counter, BOOTS, "boots") == 3
    assert model.add(counter, prompt, "red boots") == 1
    assert (search.positions, model.positions) == ([0, 3], [1, 2])
    assert counter.size == 4


def test_without_dedupe_every_add_is_a_new_entry() -> None:
    counter = EntryCounter(dedupe=False)
    lane = Lane(RecordingGame())
    assert [lane.add(counter, BOOTS, "red boots") for _ in range(3)] == [0, 1, 2]
    assert lane.items == [(BOOTS, "red boots")] * 3 and counter.size == 3


def test_a_bound_adds_texts_for_its_own_target() -> None:
    counter = EntryCounter()
    lane: Lane[ScoringTarget] = Lane(RecordingGame())
    first, second = Bound(lane, BOOTS), Bound(lane, BOOTS_POOLED)
    assert first.add(counter, "red boots") == 0
    assert second.add(counter, "red boots") == 1
    assert first.add(counter, "red boots") == 0
    assert [target for target, _ in lane.items] == [BOOTS, BOOTS_POOLED]


def test_a_lane_asks_its_game_for_keys_values_and_only_the_items_it_names() -> None:
    game = RecordingGame(scale=0.5)
    counter = EntryCounter()
    lane = Lane(game)
    for text in ("a", "bb", "ccc"):
        lane.add(counter, BOOTS, text)
    assert lane.cache_keys() == game.cache_keys(lane.items)
    assert len(set(lane.cache_keys())) == 3
    raw, evaluated = asyncio.run(lane.evaluate([2, 0], StageTimer()))
    assert game.calls == [[(BOOTS, "ccc"), (BOOTS, "a")]]
    assert raw.tolist() == [3.0, 1.0] and evaluated == 2
    assert lane.values(raw).tolist() == [1.5, 0.5]
