"""`ospo serve` in a child process, for the system suites that kill, restart or flood a real
server (tests/reliability, tests/cluster). Tests that only need a live server use the
in-process one instead (tests/support/server.py).

Every process gets a clean environment: no OSPO_* or REDIS_URL leaks in from the developer's
shell, Hugging Face stays offline, and all replicas of a session share one data dir
(`service_data_dir`), so the demo index is built once.

Fixtures: `demo_index`, `demo_query_records`, `start_service` (factory), `guarded_service`.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.redis_servers import spare_port

READY_TIMEOUT_S = 600.0  # the first start of a session may build the demo index
INDEX_BUILD_TIMEOUT_S = 900.0
_OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "OMP_NUM_THREADS": "1",  # two shared cores: several replicas must not fight over threads
    "MKL_NUM_THREADS": "1",
}


free_port = spare_port
"""A loopback port nobody listens on now (a child keeps its port across restarts)."""


def ospo_command() -> list[str]:
    """The installed `ospo` console script next to this interpreter, else `python -m service`."""
    script = Path(sys.executable).with_name("ospo")
    return [str(script)] if script.exists() else [sys.executable, "-m", "service"]


def clean_env(data_dir: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("OSPO_") and key != "REDIS_URL"
    }
    env.update(_OFFLINE_ENV)
    env["OSPO_DATA_DIR"] = str(data_dir)
    env.update(extra or {})
    return env


DEFAULT_ENCODER = "all-MiniLM-L6-v2"


def demo_index_dir(data_dir: Path) -> Path | None:
    """The default retriever's index (MiniLM, flat, torch backend) the registry cached under
    data_dir, when it exists. A shared data dir may hold other indexes of the demo catalog
    too (hash encoders, BM25, ONNX backends): they are not it."""
    for manifest in sorted(Path(data_dir).glob("indexes/demo-*/manifest.json")):
        try:
            fields = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if (
            fields.get("encoder") == DEFAULT_ENCODER
            and fields.get("index_type") == "flat"
            and fields.get("backend") in (None, "torch")
        ):
            return manifest.parent
    return None


def ensure_demo_index(data_dir: Path) -> Path:
    """Build the demo catalog and its default index under data_dir once (in a child process, so
    torch never loads into pytest), and return the index directory."""
    existing = demo_index_dir(data_dir)
    if existing is not None and (Path(data_dir) / "catalogs/demo/queries.jsonl").is_file():
        return existing
    code = (
        "from pathlib import Path; import sys\n"
        "from service.retrieval.registry import RetrieverRegistry, RetrieverSpec\n"
        "RetrieverRegistry.load([RetrieverSpec()], Path(sys.argv[1]))\n"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(data_dir)],
        env=clean_env(data_dir),
        check=True,
        timeout=INDEX_BUILD_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )
    built = demo_index_dir(data_dir)
    if built is None:
        raise RuntimeError(f"building the demo index left nothing under {data_dir}/indexes")
    return built


class ServiceProcess:
    """One `ospo serve` child on a loopback port. The port is kept across restarts, so clients
    keep their URL, as behind a Kubernetes Service."""

    def __init__(
        self,
        name: str,
        data_dir: Path,
        workdir: Path,
        *,
        redis_url: str | None = None,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        port: int | None = None,
    ) -> None:
        self.name = name
        self.data_dir = Path(data_dir)
        self.workdir = Path(workdir)
        self.port = port if port is not None else free_port()
        extra = dict(env or {})
        if redis_url is not None:
            extra["REDIS_URL"] = redis_url
        self.env = clean_env(self.data_dir, extra)
        self.args = list(args)
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / f"{name}.log"
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} is not running"
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> ServiceProcess:
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start {self.starts} of {self.name} =====\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [
                    *ospo_command(),
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    *self.args,
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        return self

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> dict[str, Any]:
        """Poll /readyz until it answers 200; fail with the log's tail if the process dies."""
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if not self.running:
                    raise RuntimeError(
                        f"{self.name} exited with {self.returncode()} before it was ready:\n"
                        + self.log_tail()
                    )
                try:
                    response = client.get(f"{self.url}/readyz")
                    if response.status_code == 200:
                        body: dict[str, Any] = response.json()
                        return body
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
        raise TimeoutError(f"{self.name} not ready within {timeout_s}s:\n{self.log_tail()}")

    def start_ready(self, timeout_s: float = READY_TIMEOUT_S) -> ServiceProcess:
        self.start()
        self.wait_ready(timeout_s)
        return self

    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM (uvicorn's graceful shutdown: in-flight requests finish), SIGKILL if stuck."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        code = self.process.returncode
        self.process = None
        return code

    def kill(self) -> None:
        """SIGKILL: the replica vanishes as in a node failure."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        self.process = None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def readyz(self) -> dict[str, Any]:
        body: dict[str, Any] = httpx.get(f"{self.url}/readyz", timeout=5.0).json()
        return body

    def metrics_text(self, headers: Mapping[str, str] | None = None) -> str:
        response = httpx.get(f"{self.url}/metrics", timeout=10.0, headers=dict(headers or {}))
        response.raise_for_status()
        return response.text


def run_ospo(
    args: Sequence[str], data_dir: Path, timeout_s: float = 300.0
) -> subprocess.CompletedProcess[str]:
    """Run `ospo ARGS` to completion (for commands expected to exit, e.g. a refused start)."""
    return subprocess.run(
        [*ospo_command(), *args],
        env=clean_env(data_dir),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        stdin=subprocess.DEVNULL,
    )


# ----------------------------------------------------------------------------- request bodies


def load_demo_queries(data_dir: Path) -> list[dict[str, Any]]:
    """The demo catalog's queries ({"id", "text", "attributes"}) as the service wrote them."""
    path = Path(data_dir) / "catalogs" / "demo" / "queries.jsonl"
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


FILLER = ("please", "maybe", "good", "nice", "cheap", "new", "best", "for me", "today", "quality")
SMALL_OPTIONS: dict[str, Any] = {"k": 100, "max_width": 3, "max_coalitions": 12}


def answer_text(query: Mapping[str, Any], rng: random.Random) -> str:
    """A rollout-like response: some reasoning, then a search query made of the target's
    attribute words (a random subset, shuffled) plus filler, inside <answer> tags."""
    words = [str(value).replace("-", " ") for value in query.get("attributes", {}).values()]
    picked = rng.sample(words, k=max(1, min(len(words), rng.randint(1, len(words) or 1))))
    picked += rng.sample(FILLER, k=rng.randint(0, 2))
    rng.shuffle(picked)
    return f"<think>the user wants {words[0] if words else 'something'}</think><answer>{' '.join(picked)}</answer>"


def attribute_body(
    queries: Sequence[Mapping[str, Any]],
    seed: int,
    *,
    groups: int = 1,
    responses: int = 2,
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A small, deterministic /attribute request over demo queries."""
    rng = random.Random(seed)
    chosen = rng.sample(list(queries), k=groups)
    return {
        "groups": [
            {
                "id": f"g{seed}-{number}",
                "target": {"query_id": query["id"]},
                "responses": [{"text": answer_text(query, rng)} for _ in range(responses)],
            }
            for number, query in enumerate(chosen)
        ],
        "options": dict(SMALL_OPTIONS if options is None else options),
    }


def answer_part(body: Mapping[str, Any]) -> dict[str, Any]:
    """What must not change between two answers to the same request: everything but the
    stats (timings and cache counters describe how the answer was produced, not the answer)."""
    return {"groups": body["groups"], "model": body["model"]}


def wait_until(predicate: Any, timeout_s: float, interval_s: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return bool(predicate())


def metric_value(metrics_text: str, name: str, labels: Mapping[str, str] | None = None) -> float:
    """Sum of the samples of `name` (exact sample name) whose labels include `labels`."""
    total = 0.0
    wanted = dict(labels or {})
    for line in metrics_text.splitlines():
        if not line or line.startswith("#"):
            continue
        sample, _, value = line.rpartition(" ")
        metric, _, label_text = sample.partition("{")
        if metric != name:
            continue
        found = dict(
            part.split("=", 1) for part in label_text.rstrip("}").split(",") if "=" in part
        )
        found = {key: val.strip('"') for key, val in found.items()}
        if all(found.get(key) == val for key, val in wanted.items()):
            total += float(value)
    return total


def client_groups(body: Mapping[str, Any]) -> tuple[list[Any], Any]:
    """The trainer_client Groups and Options of a JSON /attribute body built above."""
    from trainer_client import Group, Options, Response, Target

    groups = [
        Group(
            id=group["id"],
            target=Target(query_id=group["target"]["query_id"]),
            responses=[Response(text=response["text"]) for response in group["responses"]],
        )
        for group in body["groups"]
    ]
    return groups, Options(**body.get("options", {}))


@dataclass
class Outcome:
    index: int
    result: Any = None
    error: BaseException | None = None
    seconds: float = 0.0


@dataclass
class RequestLoop:
    """`workers` threads calling send(index) over indexes 0..count-1, round and round, until
    stopped: the traffic a fault test injects its fault into. Every outcome is kept."""

    send: Callable[[int], Any]
    count: int
    workers: int = 3
    outcomes: list[Outcome] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._next = 0
        self._pool = ThreadPoolExecutor(max_workers=self.workers)
        self._futures: list[Any] = []

    def _work(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                index = self._next % self.count
                self._next += 1
            started = time.monotonic()
            outcome = Outcome(index)
            try:
                outcome.result = self.send(index)
            except BaseException as exc:  # noqa: B036 - every failure is a finding to report
                outcome.error = exc
            outcome.seconds = time.monotonic() - started
            with self._lock:
                self.outcomes.append(outcome)

    def start(self) -> RequestLoop:
        self._futures = [self._pool.submit(self._work) for _ in range(self.workers)]
        return self

    @property
    def completed(self) -> int:
        with self._lock:
            return len(self.outcomes)

    def wait_for(self, completed: int, timeout_s: float) -> None:
        if not wait_until(lambda: self.completed >= completed, timeout_s):
            raise TimeoutError(
                f"only {self.completed} of {completed} requests finished in {timeout_s}s"
            )

    def stop(self) -> list[Outcome]:
        self._stop.set()
        for future in self._futures:
            future.result(timeout=300)
        self._pool.shutdown()
        return self.outcomes

    def failures(self) -> list[Outcome]:
        return [outcome for outcome in self.outcomes if outcome.error is not None]


__all__ = [
    "FILLER",
    "Outcome",
    "RequestLoop",
    "client_groups",
    "SMALL_OPTIONS",
    "ServiceProcess",
    "answer_part",
    "answer_text",
    "attribute_body",
    "clean_env",
    "demo_index_dir",
    "ensure_demo_index",
    "free_port",
    "load_demo_queries",
    "metric_value",
    "ospo_command",
    "run_ospo",
    "wait_until",
]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def demo_index(service_data_dir: Path) -> Path:
    """The prebuilt MiniLM flat index directory of the demo catalog."""
    found = demo_index_dir(service_data_dir)
    assert found is not None
    return Path(found)


@pytest.fixture(scope="session")
def demo_query_records(service_data_dir: Path) -> list[dict[str, Any]]:
    """The demo catalog's queries as the service wrote them: {"id", "text", "attributes"}."""
    return list(load_demo_queries(service_data_dir))


@pytest.fixture
def start_service(service_data_dir: Path, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Factory: start_service(name="ospo", redis_url=None, env=None, args=()) -> a ready
    ServiceProcess (memory cache unless redis_url is given). All are stopped at teardown."""
    started: list[ServiceProcess] = []

    def start(
        name: str = "ospo",
        *,
        redis_url: str | None = None,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
        wait: bool = True,
    ) -> ServiceProcess:
        process = ServiceProcess(
            name, service_data_dir, tmp_path / "services", redis_url=redis_url, env=env, args=args
        )
        started.append(process)
        process.start()
        if wait:
            process.wait_ready()
        return process

    yield start
    for process in started:
        process.stop()


GUARDED_API_KEY = "ospo-test-key-7f3a9c1e5b"
GUARDED_MAX_BODY_BYTES = 64 * 1024
# Small enough that a body over it still fits under GUARDED_MAX_BODY_BYTES.
GUARDED_MAX_TOKEN_OFFSETS = 2048


@pytest.fixture(scope="session")
def guarded_service(
    service_data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """One service shared by the hostile-input, auth and schemathesis tests: API key on, a
    64 KiB body limit (cheap to exceed), DEBUG logs (the key must not show up even there),
    in-process cache. Its combined stdout/stderr is `.log_text()`; `.api_key`,
    `.max_body_bytes` and `.max_token_offsets` say what it was started with."""
    process: Any = ServiceProcess(
        "ospo-guarded",
        service_data_dir,
        tmp_path_factory.mktemp("guarded"),
        env={
            "OSPO_API_KEY": GUARDED_API_KEY,
            "OSPO_MAX_BODY_BYTES": str(GUARDED_MAX_BODY_BYTES),
            "OSPO_MAX_TOKEN_OFFSETS": str(GUARDED_MAX_TOKEN_OFFSETS),
            "OSPO_LOG_LEVEL": "DEBUG",
        },
    )
    process.api_key = GUARDED_API_KEY
    process.max_body_bytes = GUARDED_MAX_BODY_BYTES
    process.max_token_offsets = GUARDED_MAX_TOKEN_OFFSETS
    try:
        process.start_ready()
        yield process
    finally:
        process.stop()
