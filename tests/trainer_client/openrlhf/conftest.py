"""Fixtures for the OpenRLHF plug-in tests against the real openrlhf 0.11.2 classes.

OpenRLHF's trainer modules import on CPU only with stand-ins for flash-attn and vLLM
(`_stubs.py`, loaded by path). Never `import tests`: the openrlhf wheel ships a top-level
`tests` package.
"""

from __future__ import annotations

import http.server
import importlib
import importlib.util
import json
import os
import socket
import sys
import threading
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

STUBS_PATH = Path(__file__).resolve().parent / "_stubs.py"


def _load_stubs() -> types.ModuleType:
    name = "_ospo_tests_openrlhf_stubs"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, STUBS_PATH)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


stubs = _load_stubs()

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def require_openrlhf() -> None:
    """Skip without openrlhf, except under CI=true where a missing stack is a failure."""
    if os.environ.get("CI", "").lower() == "true":
        importlib.import_module("openrlhf")
    else:
        pytest.importorskip("openrlhf", reason="openrlhf 0.11.2 is not installed (make install)")


@pytest.fixture(scope="session")
def openrlhf_stubs() -> types.ModuleType:
    """`_stubs.py`: OpenRLHF modules imported with the flash-attn/vLLM stand-ins."""
    return stubs


@pytest.fixture(scope="session")
def require_group_errors() -> Callable[[str], None]:
    """Skip until the service at a URL accepts options.errors (per-group errors)."""
    import httpx

    def check(url: str) -> None:
        body = {
            "groups": [
                {"id": "g", "target": {"query_id": "demo-0000"}, "responses": [{"text": "a"}]}
            ],
            "options": {"errors": "group"},
        }
        answer = httpx.post(f"{url}/attribute", json=body, timeout=60)
        if answer.status_code == 422 and "errors" in answer.text:
            pytest.skip("the service does not accept options.errors yet")

    return check


@pytest.fixture(scope="session")
def experience_maker_module() -> types.ModuleType:
    require_openrlhf()
    return stubs.import_experience_maker()


@pytest.fixture(scope="session")
def experience_class(experience_maker_module: types.ModuleType) -> type:
    from openrlhf.trainer.ppo_utils.experience import Experience

    return Experience  # type: ignore[no-any-return]


@pytest.fixture
def make_maker(experience_maker_module: types.ModuleType) -> Callable[..., Any]:
    """A RemoteExperienceMaker built without __init__ (no Ray groups), as OpenRLHF's tests do."""

    def make(tokenizer: Any, estimator: str = "group_norm", n_samples: int = 2) -> Any:
        cls = experience_maker_module.RemoteExperienceMaker
        maker = cls.__new__(cls)
        args = types.SimpleNamespace(
            rollout=types.SimpleNamespace(n_samples_per_prompt=n_samples, micro_batch_size=2),
            reward=types.SimpleNamespace(
                clip_range=(-10.0, 10.0), overlong_buffer_len=None, stop_properly_penalty_coef=None
            ),
            algo=types.SimpleNamespace(
                advantage=types.SimpleNamespace(
                    estimator=estimator, gamma=1.0, lambd=1.0, no_std_norm=False
                ),
                kl=types.SimpleNamespace(use_loss=True, init_coef=0.001),
            ),
            train=types.SimpleNamespace(dynamic_batch_enable=False, agent_func_path=None),
            actor=types.SimpleNamespace(policy_loss_type="ppo"),
            data=types.SimpleNamespace(label_key="label"),
        )
        maker.strategy = types.SimpleNamespace(args=args)
        maker.args = args
        maker.advantage_estimator = estimator
        maker.kl_ctl = types.SimpleNamespace(value=0.0)
        maker.tokenizer = tokenizer
        return maker

    return make


# --------------------------------------------------------------------------- services


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


class _FakeAttributeHandler(http.server.BaseHTTPRequestHandler):
    """Deterministic stdlib /attribute: token advantage = 10 * group + response + token / 100."""

    bodies: list[dict[str, Any]]

    def do_POST(self) -> None:  # noqa: N802 (http.server naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.bodies.append(body)
        groups = []
        for g, group in enumerate(body["groups"]):
            responses = [
                {
                    "reward": 0.5,
                    "advantage": float(r),
                    "segments": [],
                    "token_advantages": [
                        10.0 * g + r + t / 100 for t in range(len(resp["token_offsets"]))
                    ],
                }
                for r, resp in enumerate(group["responses"])
            ]
            groups.append({"id": group["id"], "responses": responses})
        payload = json.dumps(
            {
                "groups": groups,
                "stats": {},
                "model": {"retriever": "fake", "encoder": "fake", "index_version": "0"},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def fake_attribute_service() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A stdlib http.server implementing /attribute deterministically; yields (url, bodies)."""
    bodies: list[dict[str, Any]] = []
    handler = type("Handler", (_FakeAttributeHandler,), {"bodies": bodies})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", bodies
    server.shutdown()
    server.server_close()
