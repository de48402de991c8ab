"""Headless Chromium through Playwright, for the /inspect page tests.

Browser policy: tests marked `browser` skip with a reason when Chromium cannot be launched
(run `bash deploy/install-browser.sh`), and fail instead when CI=true.

Fixtures: `chromium` (one browser per module), `page`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("OSPO_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


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
