"""`create_app(settings)`: the FastAPI app. Its lifespan loads the retrievers (models and
indexes, built on disk once), the reward models of the config file, the score cache and the
engine; /readyz answers 503 until then."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio
from fastapi import FastAPI

from service import __version__
from service.api.deps import AppState, BearerAuthMiddleware, Services
from service.api.handlers import install_handlers
from service.api.metrics import ServiceMetrics
from service.api.middleware import BodyLimitMiddleware, MetricsMiddleware
from service.api.routes import public_paths, routers
from service.config import Settings

if TYPE_CHECKING:
    from service.cache import ScoreCache
    from service.retrieval.registry import RetrieverRegistry
    from service.rewardmodel import RewardModelRegistry

logger = logging.getLogger(__name__)


def load_registry(settings: Settings) -> RetrieverRegistry:
    """Build missing indexes once under data_dir, load every retriever and warm it up."""
    from service.retrieval.registry import RetrieverRegistry

    if settings.cpu_threads is not None:
        set_cpu_threads(settings.cpu_threads)
    return RetrieverRegistry.load(settings.retriever_specs(), settings.data_dir.expanduser())


def set_cpu_threads(threads: int) -> None:
    """Cap torch's and faiss's intra-op threads (process-wide)."""
    import faiss
    import torch

    torch.set_num_threads(threads)
    faiss.omp_set_num_threads(threads)
    logger.info("cpu threads for torch and faiss: %d", threads)


def load_reward_models(settings: Settings) -> RewardModelRegistry:
    """The config file's reward models (in-process ones load their weights here: blocking)."""
    from service.rewardmodel import RewardModelRegistry

    return RewardModelRegistry.load(settings.reward_model_specs())


def build_cache(settings: Settings, metrics: ServiceMetrics) -> ScoreCache:
    from service.cache import create_cache

    return create_cache(
        settings.redis_url,
        ttl_s=settings.cache_ttl_s,
        memory_items=settings.cache_memory_items,
        timeout_s=settings.redis_timeout_s,
        retry_interval_s=settings.redis_retry_interval_s,
        on_error=lambda _reason: metrics.redis_errors.inc(),
    )


async def start_services(
    state: AppState,
    registry: RetrieverRegistry | None = None,
    cache: ScoreCache | None = None,
    reward_models: RewardModelRegistry | None = None,
) -> Services:
    from service.engine import Admission, AttributionEngine, EncodeBatcher, Limits

    settings = state.settings
    metrics = state.metrics
    if registry is None:
        registry = await anyio.to_thread.run_sync(load_registry, settings)
    if reward_models is None:
        reward_models = await anyio.to_thread.run_sync(load_reward_models, settings)
    if cache is None:
        cache = build_cache(settings, metrics)
    degraded_cache = cache
    metrics.watch_cache_degraded(lambda: bool(degraded_cache.degraded))
    batcher = EncodeBatcher(
        window_s=settings.batch_window_ms / 1000.0,
        max_batch_texts=max(settings.encode_batch_size * 8, 1),
        on_batch=metrics.encode_batch_size.observe,
    )

    def on_admission(inflight: int, waiting: int) -> None:
        metrics.inflight.set(inflight)
        metrics.queue_depth.set(waiting)

    engine = AttributionEngine(
        registry,
        cache,
        limits=Limits.from_settings(settings),
        batcher=batcher,
        encode_batch_size=settings.encode_batch_size,
        reward_models=reward_models,
    )
    admission = Admission(
        settings.max_inflight,
        settings.max_queue,
        retry_after_s=settings.retry_after_s,
        on_change=on_admission,
    )
    if settings.warmup:
        for name in registry.names():
            # The first encoder call pays for lazy initialisation; keep it out of requests.
            await engine.search(name, "warm up", 1)
    return Services(registry=registry, cache=cache, engine=engine, admission=admission)


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
            state.services = await start_services(state, registry, cache, reward_models)
        except Exception as exc:
            state.status = "failed"
            state.error = str(exc)
            logger.error("startup failed: %s", exc)
            raise
        state.status = "ready"
        metrics.ready.set(1)
        loaded_models = state.services.engine.reward_models
        logger.info(
            "ospo ready: retrievers=%s reward_models=%s cache=%s",
            ",".join(state.services.registry.names()),
            ",".join(loaded_models.names()) if loaded_models is not None else "",
            state.services.cache.backend,
        )
        try:
            yield
        finally:
            state.status = "stopping"
            metrics.ready.set(0)
            if cache is None:
                state.services.cache.close()
            if reward_models is None and loaded_models is not None:
                await loaded_models.aclose()

    app = FastAPI(
        title="ospo",
        version=__version__,
        description="OSPO coalition rewards, segment credit and token advantages for GRPO.",
        lifespan=lifespan,
    )
    app.state.ospo = state
    install_handlers(app)
    for router in routers():
        app.include_router(router)
    # Outermost first: metrics see every answer (401, 413 included); auth runs before the body
    # is read; the body limit runs before anything parses the body.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.api_key is not None and settings.api_key.get_secret_value():
        app.add_middleware(
            BearerAuthMiddleware,
            api_key=settings.api_key.get_secret_value(),
            public_paths=public_paths(),
        )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


__all__ = ["create_app", "load_registry", "load_reward_models", "start_services"]
