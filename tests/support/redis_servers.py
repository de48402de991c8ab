"""Redis for tests: the shared, real Redis at REDIS_URL and private redis-server processes.

Policy: tests that need Redis skip with a reason when none is reachable, and fail instead
when OSPO_REQUIRE_REDIS=1 (CI sets it). Tests using these fixtures get the `redis` marker
(tests/conftest.py's collection hook), and tests marked `redis` get the reachability check,
so `-m "not redis"` deselects them all. The shared server is used by many tests at once:
write only under `redis_key_prefix` and never FLUSHALL/FLUSHDB it.

A PrivateRedis owns one port for its whole life, so `kill()` then `start()` brings Redis back
at the same URL, as an operator restarting it would (the fault tests rely on it).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_py

START_TIMEOUT_S = 10.0
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
REDIS_FIXTURES = frozenset({"redis_url", "redis_client", "redis_key_prefix", "private_redis"})
"""Fixtures that need a Redis: a test using one is marked `redis`."""


def redis_server_binary() -> str | None:
    """Path of redis-server (env REDIS_SERVER overrides), or None when not installed."""
    return shutil.which(os.environ.get("REDIS_SERVER") or "redis-server")


def spare_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers_ping(port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class PrivateRedis:
    """One redis-server child process: no persistence, bound to 127.0.0.1 only."""

    def __init__(self, binary: str, workdir: Path, port: int | None = None) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = port if port is not None else spare_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._paused = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start redis-server on `port` and wait until it answers PING."""
        if self.running:
            raise RuntimeError(f"redis-server on port {self.port} is already running")
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.workdir / f"redis-{self.port}.log", "ab")
        try:
            # fmt: off
            self.process = subprocess.Popen(
                [
                    self.binary, "--port", str(self.port), "--save", "", "--appendonly", "no",
                    "--bind", "127.0.0.1", "--daemonize", "no", "--dir", str(self.workdir),
                ],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
            # fmt: on
        finally:
            log.close()
        self._paused = False
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"redis-server on port {self.port} exited with {self.process.returncode}; "
                    f"see {self.workdir / f'redis-{self.port}.log'}"
                )
            if _answers_ping(self.port):
                return
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(
            f"redis-server on port {self.port} did not answer within {START_TIMEOUT_S}s"
        )

    def kill(self) -> None:
        """SIGKILL: Redis vanishes as in a crash (its data with it: no persistence)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        self.process = None
        self._paused = False

    def pause(self) -> None:
        """SIGSTOP: connections still open, but nothing answers (a stalled Redis)."""
        if not self.running:
            raise RuntimeError("redis-server is not running")
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """SIGCONT after `pause()`."""
        if not self.running:
            raise RuntimeError("redis-server is not running")
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)
        self._paused = False

    def stop(self) -> None:
        """Tear down whatever state the test left it in."""
        if self.running and self._paused:
            self.resume()
        self.kill()


# --------------------------------------------------------------------------- fixtures


def redis_required() -> bool:
    return os.environ.get("OSPO_REQUIRE_REDIS") == "1"


def skip_or_fail(reason: str, remedy: str) -> None:
    """Skip with `reason`, or fail when OSPO_REQUIRE_REDIS=1 demands Redis."""
    if redis_required():
        pytest.fail(f"{reason} (OSPO_REQUIRE_REDIS=1, so this is a failure)", pytrace=False)
    pytest.skip(f"{reason}; {remedy} (OSPO_REQUIRE_REDIS=1 turns this skip into a failure)")


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


def private_redis_binary() -> str:
    """redis-server's path, or skip/fail (the fault tests start their own)."""
    binary = redis_server_binary()
    if binary is None:
        skip_or_fail(
            "redis-server is not on PATH (fault tests start their own)",
            "install it or set REDIS_SERVER to its path",
        )
    assert binary is not None
    return binary


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[Any]:
    """A started redis-server of this test's own on a spare loopback port.

    The object has .url, .port, .kill() (SIGKILL), .start() (same port), .pause() (SIGSTOP),
    .resume() (SIGCONT); it is stopped at teardown whatever state it is in.
    """
    server = PrivateRedis(private_redis_binary(), tmp_path / "private-redis")
    try:
        server.start()
        yield server
    finally:
        server.stop()
