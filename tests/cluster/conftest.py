"""Fixtures for the local stand-in for the cluster: the service-process helpers of
tests/reliability (loaded by path) and the session's shared data dir (the same path as there,
so the demo index is built once per session whichever directory runs first)."""

from __future__ import annotations

import importlib.util
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
def cluster_data_dir(ospo_test_data_dir: Path) -> Path:
    svc.ensure_demo_index(ospo_test_data_dir)
    return ospo_test_data_dir


@pytest.fixture(scope="session")
def cluster_queries(cluster_data_dir: Path) -> list[dict[str, Any]]:
    return list(svc.load_demo_queries(cluster_data_dir))
