"""Fixtures of the inspection tests: the demo catalog behind a hash-encoder retriever (fast,
deterministic, the real app and engine otherwise), the app served by uvicorn in a background
thread on a free port, and headless Chromium through Playwright.

Browser policy: tests marked `browser` skip with a reason when Chromium cannot be launched
(run `bash deploy/install-browser.sh`), and fail instead when CI=true.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from pydantic import SecretStr

from service.api import create_app
from service.config import Settings

CHROMIUM = os.environ.get("OSPO_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
API_KEY = "inspect-test-key"
RETRIEVERS_TOML = """
[[retrievers]]
name = "default"
encoder = "hash:256"
catalog = "demo"
index_type = "flat"
"""
# Environment the app's Settings() would otherwise pick up from the developer's shell.
_HERMETIC_UNSET = ("REDIS_URL", "OSPO_REDIS_URL", "OSPO_API_KEY", "NO_COLOR", "OSPO_URL")


@pytest.fixture(scope="session")
def inspect_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(retrievers config file, data dir) shared by the session: the index is built once."""
    root = tmp_path_factory.mktemp("inspect-service")
    config = root / "retrievers.toml"
    config.write_text(RETRIEVERS_TOML)
    return config, root / "data"


def make_settings(dirs: tuple[Path, Path], api_key: str | None = None) -> Settings:
    config, data_dir = dirs
    return Settings(
        config_file=config,
        data_dir=data_dir,
        redis_url=None,
        api_key=SecretStr(api_key) if api_key else None,
        warmup=True,
    )


@pytest.fixture
def service_env(inspect_dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Env for code that builds default Settings() itself (the in-process CLI)."""
    config, data_dir = inspect_dirs
    for name in _HERMETIC_UNSET:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OSPO_CONFIG", str(config))
    monkeypatch.setenv("OSPO_DATA_DIR", str(data_dir))


@dataclass
class LiveServer:
    url: str
    api_key: str | None

    def client(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60.0)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def _serve(inspect_dirs: tuple[Path, Path]) -> Iterator[Any]:
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(api_key: str | None) -> LiveServer:
        port = _free_port()
        app = create_app(make_settings(inspect_dirs, api_key))
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
        thread.start()
        servers.append((server, thread))
        deadline = time.monotonic() + 600
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("uvicorn exited during startup (see the log above)")
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start within 600 s")
            time.sleep(0.05)
        return LiveServer(url=f"http://127.0.0.1:{port}", api_key=api_key)

    yield start
    for server, _ in servers:
        server.should_exit = True
    for _, thread in servers:
        thread.join(timeout=30)


@pytest.fixture(scope="session")
def live_server(_serve: Any) -> LiveServer:
    """The app with auth off, on a real socket."""
    server: LiveServer = _serve(None)
    return server


@pytest.fixture(scope="session")
def live_server_with_key(_serve: Any) -> LiveServer:
    """The app with OSPO_API_KEY-style auth on."""
    server: LiveServer = _serve(API_KEY)
    return server


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true, so this is a failure)", pytrace=False)
    pytest.skip(f"{reason}; run `bash deploy/install-browser.sh` (CI=true makes this a failure)")


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Headless Debian Chromium driven by Playwright, one browser per module: Playwright's sync
    API keeps an asyncio loop running in the main thread until it stops, which would break
    every later test that calls asyncio.run()."""
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        _skip_or_fail(f"the playwright package is not installed ({exc})")
    if not Path(CHROMIUM).exists():
        _skip_or_fail(f"no Chromium at {CHROMIUM}")
    manager = sync_playwright()
    playwright = manager.start()
    try:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
    except PlaywrightError as exc:
        manager.__exit__(None, None, None)
        _skip_or_fail(f"Chromium at {CHROMIUM} cannot be launched: {exc.message.splitlines()[0]}")
    try:
        yield browser
    finally:
        browser.close()
        manager.__exit__(None, None, None)


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    """A fresh page that records console errors, page errors and every requested URL."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.console_errors = []  # type: ignore[attr-defined]
    page.requested = []  # type: ignore[attr-defined]
    page.on("console", lambda m: m.type == "error" and page.console_errors.append(m.text))
    page.on("pageerror", lambda e: page.console_errors.append(str(e)))
    page.on("request", lambda r: page.requested.append(r.url))
    page.set_default_timeout(120_000)
    try:
        yield page
    finally:
        context.close()
