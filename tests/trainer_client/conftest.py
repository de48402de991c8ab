"""Fixtures for the trainer client tests (here and in openrlhf/): a scriptable fake service
for httpx.MockTransport, recorded sleeps, the two real tokenizers (MiniLM, SmolLM2), and the
real service on loopback."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import httpx
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def fake_attribute_answer(body: dict[str, Any]) -> dict[str, Any]:
    """A deterministic /attribute answer that depends on the request: each response's
    reward is its text length, token advantages encode (group position, token position)."""
    groups = []
    for g, group in enumerate(body["groups"]):
        responses = []
        for r, response in enumerate(group["responses"]):
            offsets = response.get("token_offsets")
            responses.append(
                {
                    "reward": float(len(response["text"])),
                    "advantage": float(r),
                    "segments": [
                        {
                            "start": 0,
                            "end": 1,
                            "text": response["text"][:1],
                            "value": 0.5,
                            "credit": 1.0,
                        }
                    ],
                    "token_advantages": None
                    if offsets is None
                    else [float(1000 * g + t) for t in range(len(offsets))],
                }
            )
        groups.append({"id": group["id"], "responses": responses})
    return {
        "groups": groups,
        "stats": {
            "coalitions": 10 * len(groups),
            "unique_queries": 3,
            "cache_hits": 1,
            "encoded": 2,
            "timings_ms": {"encode": 1.5, "total": 4.0},
        },
        "model": {"retriever": "default", "encoder": "fake", "index_version": "v1"},
    }


class FakeService:
    """A MockTransport handler: scripted failures first, then fake_attribute_answer."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.script: list[Callable[[httpx.Request], httpx.Response]] = []

    def fail_next(self, *responses: Callable[[httpx.Request], httpx.Response]) -> None:
        self.script.extend(responses)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.script:
            return self.script.pop(0)(request)
        if request.url.path == "/attribute":
            return httpx.Response(200, json=fake_attribute_answer(json.loads(request.content)))
        if request.url.path == "/reward":
            body = json.loads(request.content)
            rewards = [len(q) / 100 for q in body["query"]]
            return httpx.Response(
                200, json={"rewards": rewards, "scores": rewards, "extra_logs": {}}
            )
        if request.url.path == "/healthz":
            return httpx.Response(200, json={"status": "ok"})
        if request.url.path == "/readyz":
            return httpx.Response(
                200, json={"status": "ready", "cache": {"backend": "memory", "degraded": False}}
            )
        if request.url.path == "/v1/retrievers":
            return httpx.Response(
                200,
                json={
                    "retrievers": [
                        {
                            "name": "default",
                            "encoder": "e",
                            "dim": 8,
                            "index": "flat",
                            "size": 3,
                            "version": "v",
                        }
                    ]
                },
            )
        if request.url.path.endswith("/search"):
            k = int(request.url.params["k"])
            results = [
                {"id": f"P{i}", "title": request.url.params["q"], "score": 1.0 / (i + 1)}
                for i in range(k)
            ]
            return httpx.Response(200, json={"results": results})
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "no route"}})

    def attribute_bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests if r.url.path == "/attribute"]


def status(
    code: int, headers: dict[str, str] | None = None, error: dict[str, Any] | None = None
) -> Callable[[httpx.Request], httpx.Response]:
    def respond(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            code, headers=headers, json={"error": error or {"code": f"c{code}", "message": "m"}}
        )

    return respond


def raise_(exc_type: type[httpx.TransportError]) -> Callable[[httpx.Request], httpx.Response]:
    def respond(request: httpx.Request) -> httpx.Response:
        raise exc_type("boom", request=request)

    return respond


@pytest.fixture
def fake_service() -> FakeService:
    return FakeService()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def reply() -> Any:
    """Builders of scripted answers: reply.status(503, headers=...), reply.raise_(httpx.ConnectError)."""
    import types

    return types.SimpleNamespace(status=status, raise_=raise_)


@pytest.fixture
def make_groups() -> Callable[..., list[Any]]:
    """n groups of `size` responses each; response text encodes its group and position."""
    from trainer_client import Group, Response, Target

    def make(n: int, size: int = 2, offsets: bool = True) -> list[Group]:
        groups = []
        for g in range(n):
            responses = []
            for r in range(size):
                text = f"g{g} r{r} " + "x" * r
                spans = [(0, 2), (3, 5)] if offsets else None
                responses.append(Response(text=text, token_offsets=spans))
            groups.append(Group(id=f"g{g}", target=Target(query_id=f"q{g}"), responses=responses))
        return groups

    return make


@pytest.fixture
def attribute_answer() -> Callable[[dict[str, Any]], dict[str, Any]]:
    return fake_attribute_answer


# --------------------------------------------------------------------------- the real service


@pytest.fixture(scope="session")
def service_settings_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Any]:
    """Small service settings: the demo catalog with a hash encoder, data_dir in a tmp dir
    shared by the session (the index is built once), no Redis."""
    pytest.importorskip("service.api.app", reason="service.api.app.create_app is not available yet")
    from service.config import Settings

    root = tmp_path_factory.mktemp("ospo-service")
    config = root / "retrievers.json"
    config.write_text(
        json.dumps({"retrievers": [{"name": "default", "encoder": "hash:64", "catalog": "demo"}]})
    )

    def make(**overrides: Any) -> Any:
        values: dict[str, Any] = {
            "data_dir": root / "data",
            "config_file": config,
            "warmup": False,
            "redis_url": None,
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture(scope="session")
def live_service(service_settings_factory: Callable[..., Any]) -> Any:
    """The real app on a free loopback port (service.api.local, the one in-process server)."""
    pytest.importorskip("service.api.local", reason="service.api.local is not available yet")
    from service.api.local import serve_in_background

    with serve_in_background(service_settings_factory()) as server:
        yield server.url


# --------------------------------------------------------------------------- a stand-in service


class StandIn:
    """A scriptable /attribute over real HTTP (stdlib server on loopback), for the failure
    policy: each request takes the next scripted behaviour, then answers normally.

    Behaviours: ``("status", code, headers, error)``, ``("stall", seconds)`` (then answer),
    ``("group_error", positions, code)`` (those groups of the request come back as errors).
    A normal answer: reward = advantage = response position - 0.5 (so Â differs in a group),
    token advantage t = (group position + 1) * (t + 1) * sign, ``redistributed`` true
    except for responses whose text contains "uniform".
    """

    def __init__(self) -> None:
        import http.server
        import threading

        self.script: list[tuple[Any, ...]] = []
        self.bodies: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with owner.lock:
                    owner.bodies.append(body)
                    behaviour = owner.script.pop(0) if owner.script else ("ok",)
                status, headers, payload = owner.respond(behaviour, body)
                try:
                    self.send_response(status)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    data = json.dumps(payload).encode()
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up on a stalled answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def respond(
        self, behaviour: tuple[Any, ...], body: dict[str, Any]
    ) -> tuple[int, dict[str, str], Any]:
        import time

        kind = behaviour[0]
        if kind == "status":
            _, code, headers, error = behaviour
            return code, headers or {}, {"error": error or {"code": f"c{code}", "message": "m"}}
        if kind == "stall":
            time.sleep(behaviour[1])
        failing = {g: behaviour[2] for g in behaviour[1]} if kind == "group_error" else {}
        return 200, {}, standin_answer(body, failing)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def standin_answer(body: dict[str, Any], failing: dict[int, str] | None = None) -> dict[str, Any]:
    groups = []
    for g, group in enumerate(body["groups"]):
        if failing and g in failing:
            error = {"code": failing[g], "message": f"cannot score {group['id']}"}
            groups.append(
                {"id": group["id"], "responses": [], "error": {**error, "field": f"groups[{g}]"}}
            )
            continue
        responses = []
        for r, response in enumerate(group["responses"]):
            advantage = r - 0.5
            sign = 1.0 if advantage >= 0 else -1.0
            responses.append(
                {
                    "reward": advantage,
                    "advantage": advantage,
                    "segments": [{"start": 0, "end": 1, "text": "x", "value": None, "credit": 1.0}],
                    "token_advantages": [
                        (g + 1) * (t + 1) * sign for t in range(len(response["token_offsets"]))
                    ],
                    "redistributed": "uniform" not in response["text"],
                }
            )
        groups.append({"id": group["id"], "responses": responses})
    return {
        "groups": groups,
        "stats": {"coalitions": 1},
        "model": {"retriever": "standin", "encoder": "e", "index_version": "0"},
    }


@pytest.fixture
def standin() -> Any:
    service = StandIn()
    yield service
    service.close()


@pytest.fixture
def dead_url() -> str:
    """A loopback URL nobody listens on."""
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}"
