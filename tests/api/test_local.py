"""service/api/local.py, the one in-process server (serve_in_background): it answers on its
loopback URL once the lifespan has loaded the models, reports the API key the settings
require, stops for good (idempotently), and a startup that fails raises naming the error."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from service.api.local import serve_in_background
from tests.support.server import hash_service_settings


def test_serves_until_stopped(hash_service_dirs: tuple[Path, Path]) -> None:
    server = serve_in_background(hash_service_settings(hash_service_dirs, "local-key"))
    try:
        assert server.url.startswith("http://127.0.0.1:") and server.api_key == "local-key"
        assert httpx.get(f"{server.url}/readyz", timeout=30).status_code == 200
        assert httpx.get(f"{server.url}/v1/retrievers", timeout=30).status_code == 401
        authorised = httpx.get(
            f"{server.url}/v1/retrievers",
            headers={"Authorization": "Bearer local-key"},
            timeout=30,
        )
        assert authorised.json()["retrievers"][0]["encoder"] == "hash:256"
        assert server.app.state.ospo.status == "ready"
    finally:
        server.stop()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.url}/healthz", timeout=5)
    server.stop()  # a second stop is harmless


def test_a_failed_startup_raises_with_the_reason(tmp_path: Path) -> None:
    from service.config import Settings

    missing = tmp_path / "nope.toml"
    settings = Settings(config_file=missing, data_dir=tmp_path / "data", redis_url=None)
    with pytest.raises(RuntimeError, match="did not start") as info:
        serve_in_background(settings, timeout_s=120)
    assert "nope.toml" in str(info.value)


def test_a_startup_past_its_deadline_says_so(hash_service_dirs: tuple[Path, Path]) -> None:
    # A deadline of 0 s has passed before the lifespan can have loaded anything.
    with pytest.raises(RuntimeError, match=r"not ready within 0 s"):
        serve_in_background(hash_service_settings(hash_service_dirs, None), timeout_s=0.0)
