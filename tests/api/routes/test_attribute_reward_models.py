"""POST /attribute with a reward_model target through the app: reward models come from the
config file (loaded by the lifespan); backend failures answer 502/504 naming the model,
never 500."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.api import create_app
from service.cache import MemoryScoreCache
from service.config import Settings

REVIEW = "The hotel was near the station. The breakfast was delightful. The room was small."


@pytest.fixture
def make_app(hash_registry, tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    clients: list[TestClient] = []

    def make(url: str, **entry: object) -> TestClient:
        lines = ["[[reward_models]]", 'name = "sentiment"', f'url = "{url}"']
        values = {"retries": 0, "timeout_s": 5.0, **entry}
        for key, value in values.items():
            rendered = f'"{value}"' if isinstance(value, str) else repr(value)
            lines.append(f"{key} = {rendered}")
        config = tmp_path / "ospo.toml"
        config.write_text("\n".join(lines) + "\n")
        settings = Settings(
            config_file=config, data_dir=tmp_path / "data", redis_url=None, warmup=False
        )
        app = create_app(settings, registry=hash_registry, cache=MemoryScoreCache(10_000, None))
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def body(**group: object) -> dict:
    entry = {
        "id": "g0",
        "prompt": "Review: ",
        "target": {"reward_model": "sentiment"},
        "responses": [{"text": REVIEW}, {"text": "The room was small."}],
        **group,
    }
    return {"groups": [entry], "options": {"explain": True}}


def test_attribute_with_a_configured_reward_model(make_app, reward_server, reward_logit):
    server = reward_server()
    client = make_app(server.url, score_bounds=[-5, 10], version="v7")
    answer = client.post("/attribute", json=body())
    assert answer.status_code == 200, answer.text
    data = answer.json()
    first = data["groups"][0]["responses"][0]
    assert len(first["segments"]) == 3
    values = [s["value"] for s in first["segments"]]
    assert values.index(max(values)) == 1
    assert first["reward"] == pytest.approx((reward_logit(REVIEW) + 5) / 15)
    assert data["model"]["reward_models"] == [
        {"name": "sentiment", "backend": "remote", "version": "v7"}
    ]
    assert data["model"]["retriever"] == ""
    assert data["stats"]["encoded"] == len(server.seen)


@pytest.mark.parametrize(
    ("mode", "status", "code"),
    [("error", 502, "backend_error"), ("slow", 504, "backend_timeout")],
)
def test_backend_failures_are_502_or_504_naming_the_model(
    make_app, reward_server, mode, status, code
):
    server = reward_server(mode, delay_s=5.0)
    client = make_app(server.url, timeout_s=0.3)
    answer = client.post("/attribute", json=body())
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["code"] == code
    assert "sentiment" in error["message"] and server.url in error["message"]


def test_request_errors(make_app, reward_server):
    server = reward_server()
    client = make_app(server.url)
    unknown = client.post("/attribute", json=body(target={"reward_model": "nope"}))
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "unknown_reward_model"
    no_prompt = body()
    del no_prompt["groups"][0]["prompt"]
    missing = client.post("/attribute", json=no_prompt)
    assert missing.status_code == 422
    assert missing.json()["error"]["field"] == "groups[0].prompt"
    both = client.post(
        "/attribute", json=body(target={"reward_model": "sentiment", "query_id": "demo-0000"})
    )
    assert both.status_code == 422 and "exactly one" in both.json()["error"]["message"]
    assert server.attempts == 0
