"""End-to-end fixtures: the demo catalog indexed once per test session with the real packaged
MiniLM into a session data dir, and TestClients of apps built on it (the lifespan loads
the retriever from that dir like `ospo serve` does)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

for _name, _value in (
    ("HF_HUB_OFFLINE", "1"),
    ("TRANSFORMERS_OFFLINE", "1"),
    ("TOKENIZERS_PARALLELISM", "false"),
):
    os.environ.setdefault(_name, _value)

from fastapi.testclient import TestClient  # noqa: E402

from service.api import create_app  # noqa: E402
from service.config import Settings  # noqa: E402


@pytest.fixture(scope="session")
def demo_data_dir(ospo_test_data_dir: Path) -> Path:
    """A data dir holding the demo catalog and its MiniLM flat index, built once per session
    (OSPO_TEST_DATA_DIR names a directory to reuse across sessions instead)."""
    from service.retrieval.registry import RetrieverRegistry, RetrieverSpec

    RetrieverRegistry.load([RetrieverSpec()], ospo_test_data_dir)
    return ospo_test_data_dir


@pytest.fixture(scope="session")
def demo_catalog(demo_data_dir: Path) -> Any:
    from service.retrieval.build import ensure_demo_catalog

    return ensure_demo_catalog(demo_data_dir)


@pytest.fixture
def make_client(demo_data_dir: Path) -> Iterator[Callable[..., TestClient]]:
    """Factory: a started TestClient of an app with these Settings overrides."""
    clients: list[TestClient] = []

    def make(app_kwargs: dict[str, Any] | None = None, **overrides: Any) -> TestClient:
        overrides.setdefault("redis_url", None)
        settings = Settings(data_dir=demo_data_dir, **overrides)
        client = TestClient(create_app(settings, **(app_kwargs or {})))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, demo_data_dir: Path) -> Iterator[TestClient]:
    """The default app (in-process cache, no auth), shared by a module's tests."""
    settings = Settings(data_dir=demo_data_dir, redis_url=None)
    with TestClient(create_app(settings)) as started:
        yield started


def word_offsets(text: str) -> list[list[int]]:
    """Whitespace tokens as [start, end) offsets, standing in for a trainer's tokenizer."""
    return [[m.start(), m.end()] for m in re.finditer(r"\S+", text)]


def describe(catalog: Any, query_id: str) -> str:
    """A query naming the target's distinguishing attributes."""
    attrs = catalog.query_attributes[query_id]
    noun = attrs["category"].replace("-", " ").rstrip("s")
    head = " ".join(a for a in (attrs.get("colour"), attrs.get("material"), noun) if a)
    extra = [attrs[key] for key in ("feature", "gender", "size", "brand") if key in attrs]
    return ", ".join([head, *extra])


@pytest.fixture(scope="session")
def helpers() -> Any:
    class Helpers:
        offsets = staticmethod(word_offsets)
        describe = staticmethod(describe)

    return Helpers
