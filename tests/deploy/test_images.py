"""Both CPU images are built and run for real: each builds with podman (deploy/podman-build.sh:
a Debian base bootstrapped from Debian's packages, pip through the host's configuration), runs
as uid 10001 with a read-only root filesystem and only /data and /tmp writable, becomes ready
and answers one /attribute. The slim onnx-int8 image has no torch and stays under 0.6 GB.

Needs podman, runc and debootstrap (make install puts them there as root) and root for
rootful podman; without them the tests skip with the reason, and fail under CI=true. The first
build on a machine takes minutes (base bootstrap, wheels); later builds reuse podman's layers."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
SLIM_LIMIT_BYTES = 600_000_000
UID = 10001

pytestmark = pytest.mark.slow


def _require(condition: bool, reason: str) -> None:
    if condition:
        return
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"{reason} (CI=true: a missing tool is a failure)")
    pytest.skip(reason)


def _podman_env(tmp: Path) -> dict[str, str]:
    conf = tmp / "containers.conf"
    conf.write_text("[containers]\ndefault_ulimits = []\n")
    return {**os.environ, "CONTAINERS_CONF": str(conf)}


PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager=cgroupfs"]


@pytest.fixture(scope="module")
def engine_ready() -> None:
    missing = [tool for tool in ("podman", "runc", "debootstrap") if shutil.which(tool) is None]
    _require(not missing, f"no container engine here: {', '.join(missing)} not installed")
    _require(os.geteuid() == 0, "the image tests run rootful podman and need root")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _build(dockerfile: str, tag: str, log: Path) -> int:
    with open(log, "wb") as out:
        result = subprocess.run(
            ["bash", str(DEPLOY / "podman-build.sh"), str(DEPLOY / dockerfile), tag],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=2400,
            check=False,
        )
    text = log.read_text(errors="replace")
    assert result.returncode == 0, f"building {dockerfile} failed:\n{text[-4000:]}"
    return int(text.strip().splitlines()[-1])


@pytest.fixture
def run_image(tmp_path: Path, engine_ready: None) -> Iterator[object]:
    started: list[str] = []
    env = _podman_env(tmp_path)

    def run(tag: str) -> tuple[str, str]:
        data = tmp_path / f"data-{len(started)}"
        data.mkdir()
        os.chown(data, UID, UID)
        port = _free_port()
        container = subprocess.run(
            [
                *PODMAN,
                "run",
                "-d",
                "--network",
                "host",
                "--read-only",
                "--tmpfs",
                "/tmp",
                "-v",
                f"{data}:/data",
                tag,
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        ).stdout.strip()
        started.append(container)
        return container, f"http://127.0.0.1:{port}"

    yield run, env
    for container in started:
        subprocess.run([*PODMAN, "rm", "-f", container], env=env, capture_output=True, check=False)


def _wait_ready(url: str, container: str, env: dict[str, str], seconds: float = 900) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=3).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        state = subprocess.run(
            [*PODMAN, "inspect", container, "--format", "{{.State.Running}}"],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        ).stdout.strip()
        if state == "false":
            break
        time.sleep(2)
    logs = subprocess.run(
        [*PODMAN, "logs", container], capture_output=True, text=True, env=env, check=False
    )
    pytest.fail(f"{container[:12]} never became ready:\n{(logs.stdout + logs.stderr)[-4000:]}")


def _exec(container: str, env: dict[str, str], *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PODMAN, "exec", container, *command], capture_output=True, text=True, env=env, check=False
    )


ATTRIBUTE = {
    "groups": [
        {
            "id": "g0",
            "target": {"query_id": "demo-0000"},
            "responses": [
                {
                    "text": "<answer>cotton cardigan sweater for women, cozy for cold evenings</answer>"
                },
                {"text": "<answer>please something nice i think thanks</answer>"},
            ],
        }
    ]
}


@pytest.mark.parametrize(
    ("dockerfile", "tag", "backend"),
    [
        ("Dockerfile.slim", "localhost/ospo-test:slim", "onnx-int8"),
        ("Dockerfile", "localhost/ospo-test:cpu", "torch"),
    ],
)
def test_image_builds_and_serves_non_root_read_only(
    dockerfile: str, tag: str, backend: str, run_image: object, tmp_path: Path
) -> None:
    run, env = run_image  # type: ignore[misc]
    size = _build(dockerfile, tag, tmp_path / "build.log")
    print(f"{dockerfile}: {size / 1e9:.2f} GB")
    if dockerfile == "Dockerfile.slim":
        assert size < SLIM_LIMIT_BYTES, f"slim image is {size / 1e9:.2f} GB"
    container, url = run(tag)
    _wait_ready(url, container, env)
    assert _exec(container, env, "id", "-u").stdout.strip() == str(UID)
    denied = _exec(container, env, "touch", "/opt/written")
    assert denied.returncode != 0 and "Read-only file system" in denied.stderr
    if dockerfile == "Dockerfile.slim":
        no_torch = _exec(container, env, "python", "-c", "import torch")
        assert no_torch.returncode != 0 and "No module named 'torch'" in no_torch.stderr
    answer = httpx.post(f"{url}/attribute", json=ATTRIBUTE, timeout=120)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    responses = body["groups"][0]["responses"]
    assert responses[0]["reward"] > responses[1]["reward"]
    assert all(r["segments"] for r in responses)
    retrievers = httpx.get(f"{url}/v1/retrievers", timeout=10).json()["retrievers"]
    assert [r["name"] for r in retrievers] == ["default"], json.dumps(retrievers)
    manifests = list((tmp_path).glob("data-*/indexes/*/manifest.json"))
    assert any(json.loads(m.read_text()).get("backend", "torch") == backend for m in manifests)


def test_slim_dockerfile_lints_and_leaves_torch_in_the_export_stage() -> None:
    import sys

    hadolint = Path(sys.prefix) / "bin" / "hadolint"
    _require(hadolint.exists(), f"hadolint is not installed in the venv ({hadolint})")
    result = subprocess.run(
        [str(hadolint), "--no-color", str(DEPLOY / "Dockerfile.slim")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    text = (DEPLOY / "Dockerfile.slim").read_text()
    stages = text.split("\nFROM ")
    assert len(stages) == 4  # preamble, export, build, runtime
    export, build, runtime = stages[1:]
    assert "torch==" in export and "onnx_export" in export
    assert "torch" not in build.replace("no torch", "").replace("pulls torch", "")
    assert (
        "COPY --from=build /opt/venv" in runtime and "COPY --from=export /opt/ospo/onnx" in runtime
    )
    assert "OSPO_ONNX_EXPORTS=/opt/ospo/onnx" in runtime and 'backend = "onnx-int8"' in runtime
    assert "USER ${OSPO_UID}" in runtime and "ARG OSPO_UID=10001" in runtime
