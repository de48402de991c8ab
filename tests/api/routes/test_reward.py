"""POST /reward (service/api/routes/reward.py): OpenRLHF's remote reward-model protocol on the
demo catalog with the real MiniLM retriever, labels as query ids or JSON, errors naming the
label."""

from __future__ import annotations

import json

import pytest


def reward_payload(catalog, helpers, qids):
    prompts = [f"<|user|>find: {catalog.queries[q]}<|assistant|>" for q in qids]
    good = [f"<think>hmm</think><answer>{helpers.describe(catalog, q)}</answer>" for q in qids]
    filler = ["<answer>please, I think, thanks</answer>" for _ in qids]
    return {
        "query": [p + r for p, r in zip(prompts + prompts, good + filler, strict=True)],
        "prompts": prompts + prompts,
        "labels": list(qids) + list(qids),
    }


def test_reward_speaks_openrlhf(client, demo_catalog, helpers):
    qids = list(demo_catalog.queries)[:2]
    response = client.post("/reward", json=reward_payload(demo_catalog, helpers, qids))
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"rewards", "scores", "extra_logs"}
    rewards = body["rewards"]
    assert len(rewards) == 4 and body["scores"] == rewards
    assert all(isinstance(v, list) and len(v) == 4 for v in body["extra_logs"].values())
    assert rewards[0] > rewards[2] and rewards[1] > rewards[3]
    # The reward equals POST /attribute's v(N) for the same query text.
    text = helpers.describe(demo_catalog, qids[0])
    attributed = client.post(
        "/attribute",
        json={"groups": [{"target": {"query_id": qids[0]}, "responses": [{"text": text}]}]},
    ).json()
    assert attributed["groups"][0]["responses"][0]["reward"] == pytest.approx(rewards[0])


def test_reward_with_json_labels_and_errors(client, demo_catalog, helpers):
    qid = list(demo_catalog.queries)[0]
    payload = reward_payload(demo_catalog, helpers, [qid])
    by_id = client.post("/reward", json=payload).json()["rewards"]
    payload["labels"] = [json.dumps(demo_catalog.labels[qid])] * 2
    by_labels = client.post("/reward", json=payload).json()["rewards"]
    assert by_labels == pytest.approx(by_id)
    payload["labels"] = [{"relevant": demo_catalog.labels[qid]}, None]
    response = client.post("/reward", json=payload)
    assert response.status_code == 422 and response.json()["error"]["field"] == "labels[1]"
    payload["labels"] = ["no-such-query", qid]
    response = client.post("/reward", json=payload)
    assert response.status_code == 404 and response.json()["error"]["field"] == "labels[0]"
    payload["labels"] = [qid]
    response = client.post("/reward", json=payload)
    assert response.status_code == 422 and response.json()["error"]["field"] == "labels"
