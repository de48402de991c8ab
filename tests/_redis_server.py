"""A private redis-server process on a spare loopback port, for fault tests.

Loaded by tests/conftest.py (fixture `private_redis`); tests never import it directly.
Each instance owns one port for its whole life, so `kill()` then `start()` brings Redis back
at the same URL, as an operator restarting it would.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

START_TIMEOUT_S = 10.0


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
