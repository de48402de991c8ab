"""`create_app(settings)`: the FastAPI app. Its lifespan starts the engine's services
(retrievers with their indexes built on disk once, reward models, score cache, admission);
/readyz answers 503 until then."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI

from service import __version__
from service.api.deps import AppState
from service.api.handlers import install_handlers
from service.api.metrics import ServiceMetrics
from service.api.middleware import BearerAuthMiddleware, BodyLimitMiddleware, MetricsMiddleware
from service.api.routes import PUBLIC_PATHS, ROUTERS
from service.config import Settings
from service.engine.services import start_services

if TYPE_CHECKING:
    from service.engine.services import RetrieverRegistry, RewardModelRegistry, ScoreCache

logger = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None,
    *,
    registry: RetrieverRegistry | None = None,
    cache: ScoreCache | None = None,
    reward_models: RewardModelRegistry | None = None,
) -> FastAPI:
    """The service app. `registry`/`cache`/`reward_models` may be injected (tests,
    benchmarks); otherwise the lifespan builds them from `settings`."""
    settings = settings or Settings()
    metrics = ServiceMetrics()
    state = AppState(settings=settings, metrics=metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            services = await start_services(
                settings,
                metrics.hooks(),
                registry=registry,
                cache=cache,
                reward_models=reward_models,
            )
        except Exception as exc:
            state.status = "failed"
            state.error = str(exc)
            logger.error("startup failed: %s", exc)
            raise
        state.services = services
        state.status = "ready"
        metrics.ready.set(1)
        logger.info(
            "ospo ready: retrievers=%s reward_models=%s cache=%s",
            ",".join(services.engine.retriever_names()),
            ",".join(services.engine.reward_model_names()),
            services.cache.backend,
        )
        try:
            yield
        finally:
            state.status = "stopping"
            metrics.ready.set(0)
            await services.close()

    app = FastAPI(
        title="ospo",
        version=__version__,
        description="OSPO coalition rewards, segment credit and token advantages for GRPO.",
        lifespan=lifespan,
    )
    app.state.ospo = state
    install_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    # Outermost first: metrics see every answer (401, 413 included); auth runs before the body
    # is read; the body limit runs before anything parses the body.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.api_key is not None and settings.api_key.get_secret_value():
        app.add_middleware(
            BearerAuthMiddleware,
            api_key=settings.api_key.get_secret_value(),
            public_paths=PUBLIC_PATHS,
        )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


__all__ = ["create_app"]
