"""service/api/middleware.py: bearer auth on everything but the probes, 401 in the one error
envelope, the key never logged nor exported."""

from __future__ import annotations

import uuid


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
