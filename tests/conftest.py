"""Shared Redis fixtures: the real Redis at REDIS_URL and private redis-server processes.

Policy: tests that need Redis skip with a reason when none is reachable, and fail instead
when OSPO_REQUIRE_REDIS=1. Tests using these fixtures get the `redis` marker automatically,
and tests marked `redis` get the reachability check, so `-m "not redis"` deselects them all.
The shared server is used by many tests at once: write only under `redis_key_prefix` and
never FLUSHALL/FLUSHDB it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import redis as redis_py

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
_REDIS_FIXTURES = {"redis_url", "redis_client", "redis_key_prefix", "private_redis"}


def _load_helpers(name: str, path: Path) -> ModuleType:
    """Tests are not a package (importlib import mode): load a helper module by path, once,
    under `name` in sys.modules, where test modules look it up."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


_HERE = Path(__file__).resolve().parent
_redis_server = _load_helpers("_ospo_tests_redis_server", _HERE / "_redis_server.py")
# `ospo serve` child processes (tests/reliability, tests/cluster).
_service_process = _load_helpers(
    "_ospo_tests_service_process", _HERE / "reliability" / "_service.py"
)


def redis_required() -> bool:
    return os.environ.get("OSPO_REQUIRE_REDIS") == "1"


def skip_or_fail(reason: str, remedy: str) -> None:
    """Skip with `reason`, or fail when OSPO_REQUIRE_REDIS=1 demands Redis."""
    if redis_required():
        pytest.fail(f"{reason} (OSPO_REQUIRE_REDIS=1, so this is a failure)", pytrace=False)
    pytest.skip(f"{reason}; {remedy} (OSPO_REQUIRE_REDIS=1 turns this skip into a failure)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _REDIS_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.redis)


@pytest.fixture(autouse=True)
def _redis_marker_needs_redis(request: pytest.FixtureRequest) -> None:
    # A private redis-server does not need the shared one.
    uses_private = "private_redis" in getattr(request.node, "fixturenames", ())
    if request.node.get_closest_marker("redis") is not None and not uses_private:
        request.getfixturevalue("redis_url")


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of the shared, real Redis (env REDIS_URL); skip or fail when it does not answer."""
    url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    client = redis_py.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
    try:
        client.ping()
    except (redis_py.RedisError, OSError) as exc:
        skip_or_fail(
            f"no Redis answers at {url}: {type(exc).__name__}: {exc}",
            "start one or point REDIS_URL at one",
        )
    finally:
        client.close()
    return url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis_py.Redis[bytes]]:
    """A plain client of the shared Redis (bytes responses), for checking what is stored."""
    client = redis_py.Redis.from_url(redis_url, socket_timeout=5.0)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def redis_key_prefix(redis_client: redis_py.Redis[bytes]) -> Iterator[str]:
    """A key prefix unique to this test; every key under it is deleted afterwards."""
    prefix = f"ospo-test:{uuid.uuid4().hex}:"
    yield prefix
    keys = list(redis_client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        redis_client.delete(*keys)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[Any]:
    """A started redis-server of this test's own on a spare loopback port.

    The object has .url, .port, .kill() (SIGKILL), .start() (same port), .pause() (SIGSTOP),
    .resume() (SIGCONT); it is stopped at teardown whatever state it is in.
    """
    binary = _redis_server.redis_server_binary()
    if binary is None:
        skip_or_fail(
            "redis-server is not on PATH (fault tests start their own)",
            "install it or set REDIS_SERVER to its path",
        )
    server = _redis_server.PrivateRedis(binary, tmp_path / "private-redis")
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def ospo_test_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The one OSPO data dir of the session, shared by every area that needs the MiniLM demo
    index (built there once). OSPO_TEST_DATA_DIR names a directory to reuse across sessions;
    `make test` points it at .cache/test-data."""
    override = os.environ.get("OSPO_TEST_DATA_DIR")
    data_dir = Path(override) if override else tmp_path_factory.getbasetemp() / "ospo-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    return data_dir


@pytest.fixture(scope="session")
def service_data_dir(ospo_test_data_dir: Path) -> Path:
    """The session's data dir with the demo index built in it (in a child process, so torch
    never loads into pytest) for `ospo serve` children to reuse."""
    _service_process.ensure_demo_index(ospo_test_data_dir)
    return ospo_test_data_dir
