"""The HTTP layer: `create_app(settings)` builds the FastAPI app (routes stay thin)."""

from __future__ import annotations

from service.api.app import create_app

__all__ = ["create_app"]
