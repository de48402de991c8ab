"""Fixtures for the local stand-in for the cluster: the service-process helpers of
tests/reliability (loaded by path) and the session's shared data dir (the same path as there,
so the demo index is built once per session whichever directory runs first)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest


def _load_service_helpers() -> ModuleType:
    name = "_ospo_tests_service_process"
    if name in sys.modules:
        return sys.modules[name]
    path = Path(__file__).resolve().parents[1] / "reliability" / "_service.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


svc = _load_service_helpers()


@pytest.fixture(scope="session")
def cluster_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    override = os.environ.get("OSPO_TEST_DATA_DIR")
    data_dir = Path(override) if override else tmp_path_factory.getbasetemp() / "ospo-service-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    svc.ensure_demo_index(data_dir)
    return data_dir


@pytest.fixture(scope="session")
def cluster_queries(cluster_data_dir: Path) -> list[dict[str, Any]]:
    return list(svc.load_demo_queries(cluster_data_dir))
