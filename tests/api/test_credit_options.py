"""The credit options over HTTP on the demo catalog with the real MiniLM retriever: the
README's example, a long reasoning rollout, per-group errors (status, JSON shape, metrics),
unmeasured segments as null, and /reward's extraction options."""

from __future__ import annotations

import re
from typing import Any

import pytest

README_GROUP = {
    "id": "g0",
    "target": {"query_id": "demo-0000"},
    "responses": [
        {
            "text": "<think>a cardigan for a woman</think><answer>cotton cardigan sweater for "
            "women, cozy for cold evenings</answer>"
        },
        {"text": "<answer>please something nice i think thanks</answer>"},
    ],
}


def post(client: Any, groups: list[dict[str, Any]], **options: Any) -> dict[str, Any]:
    response = client.post("/attribute", json={"groups": groups, "options": options})
    assert response.status_code == 200, response.text
    return response.json()


def test_readme_example_gives_every_segment_of_the_good_query_a_share(client: Any) -> None:
    body = post(client, [README_GROUP], explain=False)
    good = body["groups"][0]["responses"][0]
    assert [s["text"] for s in good["segments"]] == [
        "cotton cardigan sweater",
        "for women,",
        "cozy",
        "for cold evenings",
    ]
    assert all(s["value"] is not None for s in good["segments"])
    assert all(s["credit"] > 0 for s in good["segments"])
    assert sum(s["credit"] for s in good["segments"]) == pytest.approx(1.0)
    assert "clip_bound" not in body  # clipping is off unless asked for
    # min-max (the previous rule, kept for reproduction) zeroes the lowest segment.
    minmax = post(client, [README_GROUP], credit="minmax")["groups"][0]["responses"][0]
    assert min(s["credit"] for s in minmax["segments"]) == 0.0


def test_a_60k_reasoning_rollout_with_a_short_answer_is_attributed_like_the_answer(
    client: Any,
) -> None:
    answer = "navy wool cardigan for cold evenings"
    assert len(answer.split()) == 6
    thinking = "<think>" + "The shopper is cold in the evenings and likes wool. " * 1200
    rollout = thinking + f"</think><answer>{answer}</answer>"
    assert len(rollout) >= 60_000
    offsets = [[m.start(), m.end()] for m in re.finditer(r"\S+", rollout)]
    groups = [
        {
            "id": "long",
            "target": {"query_id": "demo-0000"},
            "responses": [{"text": rollout, "token_offsets": offsets}],
        },
        {"id": "short", "target": {"query_id": "demo-0000"}, "responses": [{"text": answer}]},
    ]
    body = post(client, groups)
    long, short = (g["responses"][0] for g in body["groups"])
    assert [s["text"] for s in long["segments"]] == [s["text"] for s in short["segments"]]
    assert [s["value"] for s in long["segments"]] == [s["value"] for s in short["segments"]]
    assert long["reward"] == short["reward"]
    assert len(long["token_advantages"]) == len(offsets)
    # It costs what its answer costs: the same coalitions, the same distinct partial queries.
    alone = [post(client, [g], cache=False)["stats"] for g in groups]
    assert alone[0]["coalitions"] == alone[1]["coalitions"] > 0
    assert alone[0]["unique_queries"] == alone[1]["unique_queries"]


def test_errors_group_answers_200_with_the_group_error_and_counts_it(client: Any) -> None:
    bad = {**README_GROUP, "id": "bad", "target": {"query_id": "no-such-query"}}
    response = client.post(
        "/attribute", json={"groups": [README_GROUP, bad], "options": {"errors": "group"}}
    )
    assert response.status_code == 200, response.text
    good, failed = response.json()["groups"]
    assert good["id"] == "g0" and len(good["responses"]) == 2 and "error" not in good
    assert failed == {
        "id": "bad",
        "responses": [],
        "error": {
            "code": "unknown_query",
            "message": failed["error"]["message"],
            "field": "groups[1].target.query_id",
        },
    }
    assert "no-such-query" in failed["error"]["message"]
    assert response.json()["stats"]["group_errors"] == 1
    metrics = client.get("/metrics").text
    assert re.search(r'ospo_group_errors_total\{code="unknown_query"\} [1-9]', metrics)
    strict = client.post("/attribute", json={"groups": [README_GROUP, bad]})
    assert strict.status_code == 404 and strict.json()["error"]["code"] == "unknown_query"


def test_unmeasured_segments_are_sent_as_null(client: Any) -> None:
    text = "red, leather, ankle, boots, for, women, size, eight, with, laces"
    body = post(
        client,
        [{"target": {"query_id": "demo-0000"}, "responses": [{"text": text}]}],
        segmenter="word",
        max_coalitions=4,
    )
    segments = body["groups"][0]["responses"][0]["segments"]
    assert any(s["value"] is None for s in segments)
    assert all("value" in s for s in segments)


def test_reward_follows_the_query_tag_and_depth(client: Any) -> None:
    answer = "navy wool cardigan for cold evenings"
    texts = [f"<think>hmm</think><search>{answer}</search>", answer]
    tagged = client.post(
        "/reward?query_tag=search&depth=500",
        json={"query": texts, "labels": ["demo-0000", "demo-0000"]},
    )
    assert tagged.status_code == 200, tagged.text
    rewards = tagged.json()["rewards"]
    assert rewards[0] == rewards[1] > 0
    refused = client.post("/reward?depth=0", json={"query": texts, "labels": ["demo-0000"] * 2})
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "depth"
