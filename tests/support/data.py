"""The demo data every area shares: the session's data dir (with the MiniLM demo index built
in it once), the demo catalog and its queries, and the little helpers that write responses
for them.

Fixtures: `ospo_test_data_dir`, `service_data_dir`, `demo_catalog`, `demo_queries`, `helpers`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from tests.support.service_process import ensure_demo_index


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
    """The session's data dir with the demo catalog and its MiniLM flat index built in it (in
    a child process, so torch never loads into pytest just for the build), for in-process apps
    and `ospo serve` children to load like `ospo serve` does."""
    ensure_demo_index(ospo_test_data_dir)
    return ospo_test_data_dir


@pytest.fixture(scope="session")
def demo_catalog() -> Any:
    """The demo catalog (seed 0, full size): what `catalog = "demo"` serves."""
    from service.retrieval.demo import build_demo_catalog

    return build_demo_catalog(seed=0)


@pytest.fixture(scope="session")
def demo_queries(demo_catalog: Any) -> dict[str, str]:
    """The demo catalog's queries, id -> text."""
    return dict(demo_catalog.queries)


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


class Helpers:
    offsets = staticmethod(word_offsets)
    describe = staticmethod(describe)


@pytest.fixture(scope="session")
def helpers() -> type[Helpers]:
    """`helpers.offsets(text)` (word offsets), `helpers.describe(catalog, query_id)`."""
    return Helpers
