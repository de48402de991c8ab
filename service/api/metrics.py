"""Prometheus collectors of one app instance (own CollectorRegistry, `ospo_` prefix), so
several apps in one process (tests) never share or clash on counters."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from service.engine.services import ServiceHooks
from service.schemas import Stats

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServiceMetrics:
    """The service's metrics. Label values are bounded (route templates, status codes, stage
    names) so cardinality cannot grow with traffic."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "ospo_requests", "HTTP requests by route and status", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "ospo_request_latency_seconds",
            "HTTP request latency by route",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.stage_latency = Histogram(
            "ospo_stage_latency_seconds",
            "Time per request-path stage (segment, cache, encode, search, score, attribute)",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.coalitions = Counter("ospo_coalitions", "Coalitions evaluated", registry=r)
        self.cache_hits = Counter("ospo_cache_hits", "Partial-query score cache hits", registry=r)
        self.cache_misses = Counter(
            "ospo_cache_misses", "Partial-query score cache misses", registry=r
        )
        self.encoded = Counter("ospo_encoded_texts", "Texts run through an encoder", registry=r)
        self.encode_batch_size = Histogram(
            "ospo_encode_batch_size",
            "Texts per shared encoder call",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.group_errors = Counter(
            "ospo_group_errors",
            "Groups answered with an error (options.errors = group), by error code",
            ["code"],
            registry=r,
        )
        self.redis_errors = Counter(
            "ospo_redis_errors", "Redis errors (served from the LRU)", registry=r
        )
        self.overloaded = Counter(
            "ospo_overloaded", "Requests refused with 503 because the queue was full", registry=r
        )
        self.queue_depth = Gauge("ospo_queue_depth", "Requests waiting for a work slot", registry=r)
        self.inflight = Gauge("ospo_inflight", "Requests holding a work slot", registry=r)
        self.cache_degraded = Gauge(
            "ospo_cache_degraded", "1 while the configured Redis is unreachable", registry=r
        )
        self.ready = Gauge("ospo_ready", "1 once models and indexes are loaded", registry=r)

    def watch_cache_degraded(self, is_degraded: Callable[[], bool]) -> None:
        self.cache_degraded.set_function(lambda: 1.0 if is_degraded() else 0.0)

    def hooks(self) -> ServiceHooks:
        """The engine's reporting callbacks, wired to these collectors."""

        def on_admission(inflight: int, waiting: int) -> None:
            self.inflight.set(inflight)
            self.queue_depth.set(waiting)

        return ServiceHooks(
            on_redis_error=lambda _reason: self.redis_errors.inc(),
            on_encode_batch=self.encode_batch_size.observe,
            on_admission=on_admission,
            watch_cache_degraded=self.watch_cache_degraded,
        )

    def record_attribute(self, stats: Stats, cached: bool) -> None:
        """The work one /attribute request did."""
        self.coalitions.inc(stats.coalitions)
        if cached:
            self.cache_hits.inc(stats.cache_hits)
            self.cache_misses.inc(stats.unique_queries - stats.cache_hits)
        self.encoded.inc(stats.encoded)
        for stage, value in stats.timings_ms.model_dump().items():
            if stage != "total":
                self.stage_latency.labels(stage=stage).observe(value / 1000.0)

    def record_reward(self, unique: int, cache_hits: int, encoded: int) -> None:
        """The work one /reward request did."""
        self.cache_hits.inc(cache_hits)
        self.cache_misses.inc(unique - cache_hits)
        self.encoded.inc(encoded)

    def render(self) -> bytes:
        return generate_latest(self.registry)


__all__ = ["CONTENT_TYPE", "ServiceMetrics"]
