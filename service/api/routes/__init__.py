"""The routers, listed explicitly, and the paths that stay public when an API key is set
(/healthz, /readyz, and the inspection page's data-free assets)."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.routes import attribute, health, inspect, retrievers, reward

ROUTERS: tuple[APIRouter, ...] = (
    health.router,
    attribute.router,
    reward.router,
    retrievers.router,
    inspect.router,
)
PUBLIC_PATHS: frozenset[str] = inspect.PAGE_PATHS

__all__ = ["PUBLIC_PATHS", "ROUTERS"]
