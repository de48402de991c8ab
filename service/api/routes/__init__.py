"""The route modules; each exposes `router`. `inspect` (the inspection UI) is optional and
included when present."""

from __future__ import annotations

import importlib

from fastapi import APIRouter

ROUTE_MODULES = ("health", "attribute", "reward", "retrievers", "inspect")
OPTIONAL_MODULES = frozenset({"inspect"})


def routers() -> list[APIRouter]:
    found: list[APIRouter] = []
    for name in ROUTE_MODULES:
        qualified = f"{__name__}.{name}"
        try:
            module = importlib.import_module(qualified)
        except ModuleNotFoundError as exc:
            if name in OPTIONAL_MODULES and exc.name == qualified:
                continue
            raise
        found.append(module.router)
    return found


__all__ = ["ROUTE_MODULES", "routers"]
