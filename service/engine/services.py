"""Building the engine and what it runs on from Settings: the retriever registry (indexes
built on disk once), the reward models of the config file, the score cache, the encode
batcher and admission. The API's lifespan calls `start_services`; metrics reach in only
through the plain callbacks of `ServiceHooks`, so nothing here knows the web framework."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from service.config import Settings
from service.engine.admission import Admission
from service.engine.batcher import EncodeBatcher
from service.engine.engine import AttributionEngine
from service.engine.limits import Limits
from service.engine.threads import run_sync

if TYPE_CHECKING:
    # Re-exported for the API's signatures: the API imports nothing below the engine.
    from service.cache import ScoreCache as ScoreCache
    from service.retrieval.registry import RetrieverRegistry as RetrieverRegistry
    from service.rewardmodel.registry import RewardModelRegistry as RewardModelRegistry

logger = logging.getLogger(__name__)


def _ignore(*_: object) -> None:
    return None


@dataclass(frozen=True)
class ServiceHooks:
    """Where the running services report to (the API wires Prometheus metrics here)."""

    on_redis_error: Callable[[str], None] = _ignore
    on_encode_batch: Callable[[int], None] = _ignore
    on_admission: Callable[[int, int], None] = _ignore
    watch_cache_degraded: Callable[[Callable[[], bool]], None] = _ignore


@dataclass
class Services:
    """What the lifespan loads: built once per app, shared by every request."""

    registry: RetrieverRegistry
    cache: ScoreCache
    engine: AttributionEngine
    admission: Admission
    # Parts built by start_services are closed by it; injected ones belong to the caller.
    owns_cache: bool = False
    owns_reward_models: bool = False

    async def close(self) -> None:
        if self.owns_cache:
            self.cache.close()
        if self.owns_reward_models and self.engine.reward_models is not None:
            await self.engine.reward_models.aclose()


def load_registry(settings: Settings) -> RetrieverRegistry:
    """Build missing indexes once under data_dir, load every retriever and warm it up."""
    from service.retrieval.registry import RetrieverRegistry

    if settings.cpu_threads is not None:
        set_cpu_threads(settings.cpu_threads)
    return RetrieverRegistry.load(settings.retriever_specs(), settings.data_dir.expanduser())


def set_cpu_threads(threads: int) -> None:
    """Cap torch's and faiss's intra-op threads (process-wide). The slim image has no torch
    (its ONNX encoder reads OSPO_CPU_THREADS itself), so each library is capped if present."""
    import importlib.util

    capped = []
    if importlib.util.find_spec("torch") is not None:
        import torch

        torch.set_num_threads(threads)
        capped.append("torch")
    if importlib.util.find_spec("faiss") is not None:
        import faiss

        faiss.omp_set_num_threads(threads)
        capped.append("faiss")
    logger.info("cpu threads for %s: %d", " and ".join(capped) or "nothing", threads)


def load_reward_models(settings: Settings) -> RewardModelRegistry:
    """The config file's reward models (in-process ones load their weights here: blocking)."""
    from service.rewardmodel import RewardModelRegistry

    return RewardModelRegistry.load(settings.reward_model_specs())


def build_cache(settings: Settings, hooks: ServiceHooks) -> ScoreCache:
    from service.cache import create_cache

    return create_cache(
        settings.redis_url,
        ttl_s=settings.cache_ttl_s,
        memory_items=settings.cache_memory_items,
        timeout_s=settings.redis_timeout_s,
        retry_interval_s=settings.redis_retry_interval_s,
        on_error=hooks.on_redis_error,
    )


async def start_services(
    settings: Settings,
    hooks: ServiceHooks | None = None,
    *,
    registry: RetrieverRegistry | None = None,
    cache: ScoreCache | None = None,
    reward_models: RewardModelRegistry | None = None,
) -> Services:
    """Load (or take the injected) registry, reward models and cache, and build the engine
    and admission inside the running event loop."""
    hooks = hooks or ServiceHooks()
    owns_cache, owns_reward_models = cache is None, reward_models is None
    if registry is None:
        registry = await run_sync(load_registry, settings)
    if reward_models is None:
        reward_models = await run_sync(load_reward_models, settings)
    if cache is None:
        cache = build_cache(settings, hooks)
    degraded_cache = cache
    hooks.watch_cache_degraded(lambda: bool(degraded_cache.degraded))
    batcher = EncodeBatcher(
        window_s=settings.batch_window_ms / 1000.0,
        max_batch_texts=max(settings.encode_batch_size * 8, 1),
        on_batch=hooks.on_encode_batch,
    )
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
        on_change=hooks.on_admission,
    )
    if settings.warmup:
        for name in registry.names():
            # The first encoder call pays for lazy initialisation; keep it out of requests.
            await engine.search(name, "warm up", 1)
    return Services(registry, cache, engine, admission, owns_cache, owns_reward_models)


__all__ = [
    "ServiceHooks",
    "Services",
    "build_cache",
    "load_registry",
    "load_reward_models",
    "set_cpu_threads",
    "start_services",
]
