"""Fixtures for the reliability tests: a session data dir holding the demo catalog and its index
(built once, reused by every `ospo serve` child of the session), and a factory of service
processes that are all stopped at teardown.

Set OSPO_TEST_DATA_DIR to reuse a data dir across sessions (its index is then built only the
first time).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

svc: Any = sys.modules["_ospo_tests_service_process"]  # loaded by tests/conftest.py


@pytest.fixture(scope="session")
def demo_index(service_data_dir: Path) -> Path:
    """The prebuilt MiniLM flat index directory of the demo catalog."""
    found = svc.demo_index_dir(service_data_dir)
    assert found is not None
    return Path(found)


@pytest.fixture(scope="session")
def demo_queries(service_data_dir: Path) -> list[dict[str, Any]]:
    return list(svc.load_demo_queries(service_data_dir))


@pytest.fixture
def start_service(service_data_dir: Path, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Factory: start_service(name="ospo", redis_url=None, env=None, args=()) -> a ready
    ServiceProcess (memory cache unless redis_url is given). All are stopped at teardown."""
    started: list[Any] = []

    def start(
        name: str = "ospo",
        *,
        redis_url: str | None = None,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
        wait: bool = True,
    ) -> Any:
        process = svc.ServiceProcess(
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


API_KEY = "ospo-test-key-7f3a9c1e5b"
MAX_BODY_BYTES = 64 * 1024
# Small enough that a body over it still fits under MAX_BODY_BYTES.
MAX_TOKEN_OFFSETS = 2048


@pytest.fixture(scope="session")
def guarded_service(
    service_data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """One service shared by the hostile-input, auth and schemathesis tests: API key on, a
    64 KiB body limit (cheap to exceed), DEBUG logs (the key must not show up even there),
    in-process cache. Its combined stdout/stderr is `.log_text()`."""
    process = svc.ServiceProcess(
        "ospo-guarded",
        service_data_dir,
        tmp_path_factory.mktemp("guarded"),
        env={
            "OSPO_API_KEY": API_KEY,
            "OSPO_MAX_BODY_BYTES": str(MAX_BODY_BYTES),
            "OSPO_MAX_TOKEN_OFFSETS": str(MAX_TOKEN_OFFSETS),
            "OSPO_LOG_LEVEL": "DEBUG",
        },
    )
    process.api_key = API_KEY
    process.max_body_bytes = MAX_BODY_BYTES
    process.max_token_offsets = MAX_TOKEN_OFFSETS
    try:
        process.start_ready()
        yield process
    finally:
        process.stop()
