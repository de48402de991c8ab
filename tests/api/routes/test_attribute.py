"""POST /attribute end to end over HTTP on the demo catalog with the real MiniLM retriever."""

from __future__ import annotations

import numpy as np
import pytest

from service.attribution import estimate

FILLER = "please help, I think, thanks"


def group_for(catalog, helpers, query_id: str) -> dict:
    good = helpers.describe(catalog, query_id)
    texts = [
        f"<think>they want something specific</think><answer>please, {good}, thanks</answer>",
        f"<answer>{FILLER}</answer>",
        f"I think {good}",
        "thanks, I think, please find something nice",
    ]
    return {
        "id": f"step0/{query_id}",
        "target": {"query_id": query_id},
        "responses": [{"text": t, "token_offsets": helpers.offsets(t)} for t in texts],
    }


def post(client, groups, **options):
    response = client.post("/attribute", json={"groups": groups, "options": options})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def query_ids(demo_catalog) -> list[str]:
    return list(demo_catalog.queries)[:3]


def test_attribute_rewards_specific_responses_and_credits_attribute_segments(
    client, demo_catalog, helpers, query_ids
):
    groups = [group_for(demo_catalog, helpers, qid) for qid in query_ids]
    body = post(client, groups, k=1000)
    assert body["model"]["retriever"] == "default"
    assert body["model"]["encoder"] == "all-MiniLM-L6-v2"
    assert body["model"]["index_version"]
    for group, qid in zip(body["groups"], query_ids, strict=True):
        assert group["id"] == f"step0/{qid}"
        good, filler, plain_good, filler2 = group["responses"]
        assert good["reward"] > filler["reward"] and plain_good["reward"] > filler2["reward"]
        assert good["advantage"] > filler["advantage"]
        filler_words = ("please", "thanks", "I think")
        filler_credit = [
            s["credit"] for s in good["segments"] if s["text"].strip(" ,") in filler_words
        ]
        attribute_credit = [
            s["credit"] for s in good["segments"] if s["text"].strip(" ,") not in filler_words
        ]
        assert filler_credit and attribute_credit
        assert max(attribute_credit) > max(filler_credit)
        # Segments lie inside the <answer> content and quote the text.
        text = groups[query_ids.index(qid)]["responses"][0]["text"]
        for segment in good["segments"]:
            assert text[segment["start"] : segment["end"]] == segment["text"]
            assert segment["start"] >= text.index("<answer>") + len("<answer>")
    stats = body["stats"]
    assert stats["coalitions"] >= stats["unique_queries"] > 0
    assert set(stats["timings_ms"]) >= {
        "segment",
        "cache",
        "encode",
        "search",
        "score",
        "attribute",
        "total",
    }


@pytest.mark.parametrize("redistribution", ["prop", "rank"])
def test_token_advantages_average_to_the_advantage(
    client, demo_catalog, helpers, query_ids, redistribution
):
    body = post(
        client,
        [group_for(demo_catalog, helpers, query_ids[0])],
        redistribution=redistribution,
        clip=None,
    )
    for response in body["groups"][0]["responses"]:
        tokens = response["token_advantages"]
        assert np.mean(tokens) == pytest.approx(response["advantage"], abs=1e-9)
    good = body["groups"][0]["responses"][0]
    assert len(set(good["token_advantages"])) > 1  # credit is not uniform


def test_uniform_equals_the_advantage_everywhere(client, demo_catalog, helpers, query_ids):
    body = post(
        client,
        [group_for(demo_catalog, helpers, query_ids[0])],
        redistribution="uniform",
        clip=None,
    )
    for response in body["groups"][0]["responses"]:
        assert response["token_advantages"] == [response["advantage"]] * len(
            response["token_advantages"]
        )


def test_token_advantages_align_with_offsets(client, demo_catalog, helpers, query_ids):
    group = group_for(demo_catalog, helpers, query_ids[1])
    body = post(client, [group])
    for sent, got in zip(group["responses"], body["groups"][0]["responses"], strict=True):
        assert len(got["token_advantages"]) == len(sent["token_offsets"])


def test_same_request_twice_is_identical_and_cached(client, demo_catalog, helpers, query_ids):
    groups = [group_for(demo_catalog, helpers, query_ids[2])]
    groups[0]["responses"].append({"text": "navy cotton something for a friend, size M"})
    first = post(client, groups, seed=7, max_coalitions=40)
    second = post(client, groups, seed=7, max_coalitions=40)
    assert first["groups"] == second["groups"]
    assert second["stats"]["cache_hits"] == second["stats"]["unique_queries"] > 0
    assert second["stats"]["encoded"] == 0


def test_explain_coalitions_reproduce_segment_values(client, demo_catalog, helpers, query_ids):
    for estimator in ("owen", "myerson"):
        body = post(
            client,
            [group_for(demo_catalog, helpers, query_ids[0])],
            explain=True,
            estimator=estimator,
            max_coalitions=512,
        )
        for response in body["groups"][0]["responses"]:
            n = len(response["segments"])
            if n < 2:
                continue
            values = {frozenset(c["members"]): c["value"] for c in response["coalitions"]}
            values[frozenset()] = 0.0
            recomputed = estimate(estimator, n, values)
            assert [s["value"] for s in response["segments"]] == pytest.approx(
                list(recomputed), abs=1e-12
            )
            assert response["reward"] == pytest.approx(values[frozenset(range(n))])
            assert all(isinstance(c["query"], str) for c in response["coalitions"])


def test_relevant_target_with_pool(client, demo_catalog, helpers, query_ids):
    qid = query_ids[0]
    labels = demo_catalog.labels[qid]
    exact = [pid for pid, gain in labels.items() if gain >= 1.0]
    negatives = [p.id for p in demo_catalog.products if p.id not in labels][:20]
    group = group_for(demo_catalog, helpers, qid)
    group["target"] = {"relevant": {exact[0]: 1.0}}
    group["pool"] = [exact[0], *negatives]
    body = post(client, [group], k=1000)
    good, filler = body["groups"][0]["responses"][:2]
    assert 0.0 <= filler["reward"] <= good["reward"] <= 1.0
    assert good["reward"] > 0.5  # the only relevant pool item ranks near the top


def test_span_selects_the_query(client, demo_catalog, helpers, query_ids):
    good = helpers.describe(demo_catalog, query_ids[0])
    text = f"ignore this prefix || {good}"
    start = text.index(good)
    group = {
        "target": {"query_id": query_ids[0]},
        "responses": [{"text": text, "span": [start, len(text)]}, {"text": FILLER}],
    }
    body = post(client, [group])
    segments = body["groups"][0]["responses"][0]["segments"]
    assert segments[0]["start"] >= start
    assert body["groups"][0]["responses"][0]["reward"] > body["groups"][0]["responses"][1]["reward"]
