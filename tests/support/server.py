"""Live servers for tests that need a real socket: the one in-process server
(`service.api.local.serve_in_background`, the helper `ospo attribute` and the experiments use
too), started once per session and stopped at its end. Tests that only need the app use a
TestClient (tests/support/app.py); tests that kill or restart a server use `ospo serve`
children (tests/support/service_process.py).

- `live_server`, `live_server_with_key`: the demo catalog behind a hash-encoder retriever
  (fast, deterministic, the real app and engine otherwise), auth off / on (`.api_key`);
  `.url`, `.client()` (an httpx.Client with the key, if any).
- `service_url`: the default service (packaged MiniLM over the demo catalog, in-process
  cache) on `ospo_test_data_dir`, as `ospo serve` would run it.
- `hash_service_env`: the environment for code that builds its own Settings() (the in-process
  `ospo attribute`), pointing at the same config and data dir as `live_server`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

HASH_RETRIEVERS_TOML = """
[[retrievers]]
name = "default"
encoder = "hash:256"
catalog = "demo"
index_type = "flat"
"""
LIVE_API_KEY = "inspect-test-key"
# Environment the app's Settings() would otherwise pick up from the developer's shell.
_HERMETIC_UNSET = ("REDIS_URL", "OSPO_REDIS_URL", "OSPO_API_KEY", "NO_COLOR", "OSPO_URL")


@dataclass
class LiveServer:
    """A started in-process server: `url`, `api_key` (None: auth off), `local` (the
    service.api.local.LocalServer, e.g. its `app`)."""

    url: str
    api_key: str | None
    local: Any

    def client(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60.0)


@pytest.fixture(scope="session")
def hash_service_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(retrievers config file, data dir) of the hash-encoder service, shared by the session:
    the index is built once."""
    root = tmp_path_factory.mktemp("hash-service")
    config = root / "retrievers.toml"
    config.write_text(HASH_RETRIEVERS_TOML)
    return config, root / "data"


def hash_service_settings(dirs: tuple[Path, Path], api_key: str | None = None) -> Any:
    from pydantic import SecretStr

    from service.config import Settings

    config, data_dir = dirs
    return Settings(
        config_file=config,
        data_dir=data_dir,
        redis_url=None,
        api_key=SecretStr(api_key) if api_key else None,
        warmup=True,
    )


@pytest.fixture
def hash_service_env(hash_service_dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Env for code that builds default Settings() itself (the in-process CLI)."""
    config, data_dir = hash_service_dirs
    for name in _HERMETIC_UNSET:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OSPO_CONFIG", str(config))
    monkeypatch.setenv("OSPO_DATA_DIR", str(data_dir))


@pytest.fixture(scope="session")
def serve() -> Iterator[Callable[..., LiveServer]]:
    """Factory: serve(settings, **app_kwargs) -> a started LiveServer, stopped at the end of
    the session (app_kwargs: registry, cache, reward_models, as create_app takes them)."""
    from service.api.local import serve_in_background

    started: list[Any] = []

    def start(settings: Any, **app_kwargs: Any) -> LiveServer:
        local = serve_in_background(settings, **app_kwargs)
        started.append(local)
        return LiveServer(url=local.url, api_key=local.api_key, local=local)

    yield start
    for local in started:
        local.stop()


@pytest.fixture(scope="session")
def live_server(
    serve: Callable[..., LiveServer], hash_service_dirs: tuple[Path, Path]
) -> LiveServer:
    """The hash-encoder app with auth off, on a real socket."""
    return serve(hash_service_settings(hash_service_dirs))


@pytest.fixture(scope="session")
def live_server_with_key(
    serve: Callable[..., LiveServer], hash_service_dirs: tuple[Path, Path]
) -> LiveServer:
    """The hash-encoder app with OSPO_API_KEY-style auth on (`.api_key`)."""
    return serve(hash_service_settings(hash_service_dirs, LIVE_API_KEY))


@pytest.fixture(scope="session")
def service_url(serve: Callable[..., LiveServer], ospo_test_data_dir: Path) -> str:
    """The real service (default retriever: packaged MiniLM over the demo catalog, in-process
    cache) on loopback. The index is built once per session (OSPO_TEST_DATA_DIR names a
    directory to reuse across sessions)."""
    from service.config import Settings

    return serve(Settings(data_dir=ospo_test_data_dir, redis_url=None)).url
