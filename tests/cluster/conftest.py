"""Fixtures for the local stand-in for the cluster. The service-process helpers
(tests/reliability/_service.py) and `service_data_dir` come from tests/conftest.py, so the demo
index is built once per session whichever directory runs first."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

svc: Any = sys.modules["_ospo_tests_service_process"]  # loaded by tests/conftest.py


@pytest.fixture(scope="session")
def cluster_queries(service_data_dir: Path) -> list[dict[str, Any]]:
    return list(svc.load_demo_queries(service_data_dir))
