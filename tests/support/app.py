"""The app in-process, without a socket: TestClients of `create_app(settings)` on the session
data dir (the lifespan loads the MiniLM demo retriever from it, as `ospo serve` does). Each
client is entered as a context manager, so the lifespan runs.

Fixtures: `client` (the default app, shared by a module), `make_client` (factory).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def make_client(service_data_dir: Path) -> Iterator[Callable[..., Any]]:
    """Factory: make_client(app_kwargs=None, **settings) -> a started TestClient of an app with
    these Settings overrides (no Redis unless redis_url is given); closed at teardown."""
    from fastapi.testclient import TestClient

    from service.api import create_app
    from service.config import Settings

    clients: list[TestClient] = []

    def make(app_kwargs: dict[str, Any] | None = None, **overrides: Any) -> TestClient:
        overrides.setdefault("redis_url", None)
        settings = Settings(data_dir=service_data_dir, **overrides)
        client = TestClient(create_app(settings, **(app_kwargs or {})))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture(scope="module")
def client(service_data_dir: Path) -> Iterator[Any]:
    """The default app (in-process cache, no auth), shared by a module's tests."""
    from fastapi.testclient import TestClient

    from service.api import create_app
    from service.config import Settings

    settings = Settings(data_dir=service_data_dir, redis_url=None)
    with TestClient(create_app(settings)) as started:
        yield started
