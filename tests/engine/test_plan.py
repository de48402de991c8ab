"""service/engine/plan.py, plan_request, on in-memory games (no retriever, no I/O): entries
are deduplicated across the whole request per game, every entry number points at the item
holding that coalition's partial text, v(∅) is an entry only for games that evaluate it, and
with errors="group" a group that cannot be planned carries its error and registers nothing."""

from __future__ import annotations

from typing import Any

import pytest

from service.engine.limits import Limits
from service.engine.plan import RequestPlan, plan_request
from service.errors import InvalidRequest, UnknownQuery
from service.schemas import AttributeRequest
from tests.support.games import StaticBinder

TEXTS = [
    "red leather boots, size 8, waterproof",
    "please, red boots, thanks",
    "red leather boots, size 8, waterproof",  # a repeat inside the group
]


def request(*groups: dict[str, Any], **options: Any) -> AttributeRequest:
    return AttributeRequest.model_validate({"groups": list(groups), "options": options})


def group(texts: list[str], gid: str, **target: Any) -> dict[str, Any]:
    return {
        "id": gid,
        "target": target or {"relevant": {"P1": 1.0}},
        "responses": [{"text": text} for text in texts],
    }


def item_of(plan: RequestPlan) -> dict[int, tuple[str, str]]:
    """entry number -> (target key, partial text) of the item registered under it."""
    found: dict[int, tuple[str, str]] = {}
    for lane in plan.lanes:
        for (target, text), position in zip(lane.items, lane.positions, strict=True):
            assert position not in found, f"entry {position} registered twice"
            found[position] = (target.key, text)
    return found


def test_entries_are_deduplicated_across_groups_of_the_same_target() -> None:
    body = request(
        group(TEXTS, "a"),
        group(TEXTS[:2], "b"),  # the same target again: nothing new to evaluate
        group(TEXTS[:1], "c", relevant={"P2": 1.0}),  # another target: its own entries
    )
    plan = plan_request(body, StaticBinder(), Limits())
    a, b, c = plan.groups
    assert [r.entries for r in b.responses] == [r.entries for r in a.responses[:2]]
    assert a.responses[2].entries == a.responses[0].entries
    assert not (set(c.responses[0].entries) & set(a.responses[0].entries)) - {-1}
    # One entry per distinct (target, partial text), numbered 0..entries-1.
    partials_a = {q for r in a.responses for q in r.queries if q}
    partials_c = {q for q in c.responses[0].queries if q}
    assert plan.entries == len(partials_a) + len(partials_c)
    assert sorted(item_of(plan)) == list(range(plan.entries))


def test_without_dedupe_every_coalition_is_its_own_entry() -> None:
    body = request(group(TEXTS, "a"), group(TEXTS[:2], "b"))
    plan = plan_request(body, StaticBinder(), Limits(), dedupe=False)
    entries = [e for g in plan.groups for r in g.responses for e in r.entries if e >= 0]
    assert sorted(entries) == list(range(plan.entries))
    deduped = plan_request(body, StaticBinder(), Limits())
    assert deduped.entries < plan.entries == len(entries)


def test_every_entry_points_at_its_coalitions_partial_text() -> None:
    binder = StaticBinder()
    plan = plan_request(request(group(TEXTS, "a"), max_coalitions=12), binder, Limits())
    items = item_of(plan)
    target_key = binder.retrieval.items[0][0].key
    for response in plan.groups[0].responses:
        assert len(response.coalitions) == len(response.queries) == len(response.entries)
        for members, query, entry in zip(
            response.coalitions, response.queries, response.entries, strict=True
        ):
            if not members:
                # Retrieval: v(∅) = 0 is never evaluated.
                assert entry == -1 and query == ""
                continue
            assert items[entry] == (target_key, query)
            # The partial text is the chosen segments' text, in order.
            for member in members:
                start, end = response.spans[member]
                assert response.text[start:end] in query
        full = frozenset(range(len(response.spans)))
        assert response.queries[response.coalitions.index(full)] == response.text


def test_a_game_that_evaluates_the_empty_coalition_gets_an_entry_for_it() -> None:
    body = request(
        {
            "id": "rm",
            "prompt": "Review: ",
            "target": {"reward_model": "rm"},
            "responses": [{"text": "The room was small. The view was great."}],
        }
    )
    binder = StaticBinder()
    plan = plan_request(body, binder, Limits())
    (response,) = plan.groups[0].responses
    assert plan.groups[0].lane == binder.reward_model.game.lane
    assert plan.lanes == [binder.reward_model]
    assert response.coalitions[0] == frozenset()
    assert response.entries[0] >= 0 and item_of(plan)[response.entries[0]][1] == ""
    # Sentences are a reward model's players unless options.segmenter says otherwise.
    assert [response.text[s:e] for s, e in response.spans] == [
        "The room was small.",
        "The view was great.",
    ]


def test_errors_group_keeps_the_error_and_registers_no_entries() -> None:
    good = group(TEXTS[:2], "good")
    bad = group(TEXTS, "bad", query_id="unknown")
    alone = plan_request(request(good), StaticBinder(), Limits())
    plan = plan_request(request(bad, good, errors="group"), StaticBinder(), Limits())
    failed, ok = plan.groups
    assert failed.id == "bad" and failed.responses == []
    assert isinstance(failed.error, UnknownQuery)
    assert failed.error.field == "groups[0].target.query_id"
    assert ok.error is None and plan.entries == alone.entries
    assert [r.entries for r in ok.responses] == [r.entries for r in alone.groups[0].responses]
    with pytest.raises(UnknownQuery):
        plan_request(request(bad, good), StaticBinder(), Limits())


def test_a_per_group_limit_becomes_that_groups_error_under_errors_group() -> None:
    body = request(group(TEXTS, "long"), group(TEXTS[:1], "short"), errors="group")
    plan = plan_request(body, StaticBinder(), Limits(max_responses=2))
    long, short = plan.groups
    assert isinstance(long.error, InvalidRequest) and long.error.field == "groups[0].responses"
    assert "max_responses=2" in long.error.message
    assert short.error is None and len(short.responses) == 1
    with pytest.raises(InvalidRequest):
        plan_request(request(group(TEXTS, "long")), StaticBinder(), Limits(max_responses=2))


def test_the_binder_is_prepared_once_and_only_used_lanes_are_returned() -> None:
    binder = StaticBinder()
    plan = plan_request(request(group(TEXTS[:1], "a"), group(TEXTS[1:2], "b")), binder, Limits())
    assert binder.prepared == 1
    assert plan.lanes == [binder.retrieval]
    assert binder.reward_model.items == []
