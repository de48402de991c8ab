"""/healthz, /readyz and /metrics (service/api/routes/health.py): readiness while loading,
the cache backend, the metrics a request leaves behind."""

from __future__ import annotations

import re


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


def test_readyz_is_503_while_loading(service_data_dir):
    from fastapi.testclient import TestClient

    from service.api import create_app
    from service.config import Settings

    app = create_app(Settings(data_dir=service_data_dir, redis_url=None))
    client = TestClient(app)  # not entered: the lifespan has not loaded anything
    response = client.get("/readyz")
    assert response.status_code == 503 and response.json()["status"] == "loading"
    response = client.post("/attribute", json={"groups": []})
    assert response.status_code in (422, 503)
    response = client.get("/v1/retrievers")
    assert response.status_code == 503 and response.json()["error"]["code"] == "not_ready"
