"""The one in-process server: the app under uvicorn on a free loopback port, in a daemon
thread of this process. `ospo attribute` without `--url`, the experiments' trainer and every
test that needs a live server use it.

    with serve_in_background(settings) as server:
        httpx.get(server.url + "/readyz")
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING

import uvicorn
from fastapi import FastAPI

from service.api.app import create_app
from service.config import Settings

if TYPE_CHECKING:
    from service.engine.services import RetrieverRegistry, RewardModelRegistry, ScoreCache

logger = logging.getLogger(__name__)


class LocalServer:
    """A started server: `url`, `api_key` (what the settings require, if anything), `app`,
    and `stop()` (also on leaving a `with` block)."""

    def __init__(
        self,
        url: str,
        app: FastAPI,
        server: uvicorn.Server,
        thread: threading.Thread,
        sock: socket.socket,
        api_key: str | None,
    ) -> None:
        self.url = url
        self.app = app
        self.api_key = api_key
        self._server = server
        self._thread = thread
        self._socket = sock

    def stop(self, timeout_s: float = 30.0) -> None:
        """Graceful shutdown (the lifespan closes what it opened); idempotent."""
        self._server.should_exit = True
        self._thread.join(timeout=timeout_s)
        self._socket.close()

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve_in_background(
    settings: Settings | None = None,
    *,
    registry: RetrieverRegistry | None = None,
    cache: ScoreCache | None = None,
    reward_models: RewardModelRegistry | None = None,
    timeout_s: float = 900.0,
) -> LocalServer:
    """Start `create_app(settings, ...)` on 127.0.0.1 and return once its lifespan has loaded
    the models (RuntimeError naming the startup error otherwise). The socket is bound before
    uvicorn starts, so no other process can take the port in between."""
    settings = settings or Settings()
    app = create_app(settings, registry=registry, cache=cache, reward_models=reward_models)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=10)
    )

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except SystemExit:
            # uvicorn exits the process on a failed startup; here it must only end the thread
            # (the caller raises with the lifespan's error).
            logger.debug("the in-process ospo service exited during startup")

    thread = threading.Thread(target=run, name=f"ospo-local-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            timed_out = thread.is_alive()
            server.should_exit = True
            thread.join(timeout=5)
            sock.close()
            reason = getattr(app.state.ospo, "error", None) or (
                f"not ready within {timeout_s:.0f} s (still loading or building its indexes)"
                if timed_out
                else "see the log above"
            )
            raise RuntimeError(f"the in-process ospo service did not start: {reason}")
        time.sleep(0.05)
    key = settings.api_key.get_secret_value() if settings.api_key is not None else None
    logger.info("in-process ospo service on 127.0.0.1:%d", port)
    return LocalServer(f"http://127.0.0.1:{port}", app, server, thread, sock, key or None)


__all__ = ["LocalServer", "serve_in_background"]
