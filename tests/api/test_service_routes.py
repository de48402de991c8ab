"""The other routes: /reward (OpenRLHF remote RM), /v1/retrievers, search, health, readiness,
metrics and bearer auth."""

from __future__ import annotations

import json
import re
import uuid

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


def test_retrievers_and_search(client, demo_catalog):
    body = client.get("/v1/retrievers").json()
    (info,) = body["retrievers"]
    assert info["name"] == "default" and info["encoder"] == "all-MiniLM-L6-v2"
    assert (
        info["dim"] == 384
        and info["index"] == "flat"
        and info["size"] == len(demo_catalog.products)
    )
    assert info["version"]
    qid = list(demo_catalog.queries)[0]
    best = max(demo_catalog.labels[qid], key=demo_catalog.labels[qid].get)
    title = demo_catalog.product(best).title
    results = client.get("/v1/retrievers/default/search", params={"q": title, "k": 5}).json()[
        "results"
    ]
    assert len(results) == 5
    assert results[0]["id"] == best and results[0]["title"] == title
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True)


def test_health_ready_and_metrics(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "cache": {"backend": "memory", "degraded": False}}
    client.post(
        "/attribute",
        json={
            "groups": [
                {
                    "target": {"query_id": "demo-0001"},
                    "responses": [{"text": "white titanium bottle, straw lid"}],
                }
            ]
        },
    )
    text = client.get("/metrics").text
    for name in (
        "ospo_requests_total",
        "ospo_request_latency_seconds_bucket",
        "ospo_coalitions_total",
        "ospo_cache_hits_total",
        "ospo_cache_misses_total",
        "ospo_encode_batch_size_bucket",
        "ospo_redis_errors_total",
        "ospo_queue_depth",
        "ospo_cache_degraded",
    ):
        assert name in text, name
    assert re.search(r'ospo_requests_total\{route="/attribute",status="200"\} [1-9]', text)
    coalitions = float(re.search(r"^ospo_coalitions_total (\S+)$", text, re.M).group(1))
    assert coalitions >= 1
    assert "ospo_cache_degraded 0.0" in text


def test_readyz_is_503_while_loading(demo_data_dir):
    from fastapi.testclient import TestClient

    from service.api import create_app
    from service.config import Settings

    app = create_app(Settings(data_dir=demo_data_dir, redis_url=None))
    client = TestClient(app)  # not entered: the lifespan has not loaded anything
    response = client.get("/readyz")
    assert response.status_code == 503 and response.json()["status"] == "loading"
    response = client.post("/attribute", json={"groups": []})
    assert response.status_code in (422, 503)
    response = client.get("/v1/retrievers")
    assert response.status_code == 503 and response.json()["error"]["code"] == "not_ready"


def test_bearer_auth(make_client, caplog):
    key = f"secret-{uuid.uuid4().hex}"
    client = make_client(api_key=key)
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    for path in ("/v1/retrievers", "/metrics", "/docs", "/openapi.json"):
        response = client.get(path)
        assert response.status_code == 401, path
        assert response.json()["error"]["code"] == "unauthorized"
    assert (
        client.get("/v1/retrievers", headers={"Authorization": "Bearer wrong"}).status_code == 401
    )
    assert client.get("/v1/retrievers", headers={"Authorization": key}).status_code == 401
    response = client.post("/attribute", json={"groups": []})
    assert response.status_code == 401
    ok = client.get("/v1/retrievers", headers={"Authorization": f"Bearer {key}"})
    assert ok.status_code == 200
    assert key not in caplog.text
    metrics = client.get("/metrics", headers={"Authorization": f"Bearer {key}"}).text
    assert 'status="401"' in metrics and key not in metrics


def test_overloaded_queue_answers_503_with_retry_after(make_client):
    client = make_client(max_inflight=1, max_queue=0)
    admission = client.app.state.ospo.services.admission
    payload = {"groups": [{"target": {"query_id": "demo-0000"}, "responses": [{"text": "lamp"}]}]}

    async def occupy() -> None:
        await admission._slots.acquire()

    async def release() -> None:
        admission._slots.release()

    # Hold the only work slot from the app's own event loop, then call from this thread.
    client.portal.call(occupy)
    try:
        response = client.post("/attribute", json=payload)
    finally:
        client.portal.call(release)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.json()["error"]["code"] == "overloaded"
    assert "max_queue=0" in response.json()["error"]["message"]
    assert client.post("/attribute", json=payload).status_code == 200
    assert "ospo_queue_depth 0.0" in client.get("/metrics").text
