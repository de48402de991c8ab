"""The route modules; each exposes `router`, and may expose `PUBLIC_PATHS` (or `PAGE_PATHS`):
paths that carry no data and stay reachable without the API key. `inspect` (the inspection
UI) is optional and included when present."""

from __future__ import annotations

import importlib
from types import ModuleType

from fastapi import APIRouter

ROUTE_MODULES = ("health", "attribute", "reward", "retrievers", "inspect")
OPTIONAL_MODULES = frozenset({"inspect"})


def _modules() -> list[ModuleType]:
    found: list[ModuleType] = []
    for name in ROUTE_MODULES:
        qualified = f"{__name__}.{name}"
        try:
            module = importlib.import_module(qualified)
        except ModuleNotFoundError as exc:
            if name in OPTIONAL_MODULES and exc.name == qualified:
                continue
            raise
        found.append(module)
    return found


def routers() -> list[APIRouter]:
    return [module.router for module in _modules()]


def public_paths() -> frozenset[str]:
    """Paths the route modules declare public (besides /healthz and /readyz)."""
    paths: set[str] = set()
    for module in _modules():
        declared = getattr(module, "PUBLIC_PATHS", None) or getattr(module, "PAGE_PATHS", None)
        if declared:
            paths.update(str(path) for path in declared)
    return frozenset(paths)


__all__ = ["ROUTE_MODULES", "public_paths", "routers"]
