"""The service on the real Redis at REDIS_URL: a repeated request is warm across app
instances (the cache outlives the process's memory), and /readyz reports the backend."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence

import pytest

from service.cache import create_cache


class RecordingCache:
    """Delegates to the real Redis cache and remembers the keys written, for cleanup."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.backend = inner.backend
        self.written: set[str] = set()

    @property
    def degraded(self) -> bool:
        return self.inner.degraded

    def get_many(self, keys: Sequence[str]) -> list[float | None]:
        return self.inner.get_many(keys)

    def set_many(self, items: Mapping[str, float]) -> None:
        self.written.update(items)
        self.inner.set_many(items)

    def ping(self) -> bool:
        return self.inner.ping()

    def stats(self) -> dict[str, int]:
        return self.inner.stats()

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def redis_cache(redis_url, redis_client):
    cache = RecordingCache(
        create_cache(redis_url, ttl_s=600, memory_items=1000, timeout_s=1.0, retry_interval_s=1.0)
    )
    yield cache
    cache.close()
    if cache.written:
        redis_client.delete(*cache.written)


def test_attribute_on_redis_is_warm_in_a_fresh_app(
    make_client, redis_cache, redis_client, demo_catalog, helpers
):
    qid = list(demo_catalog.queries)[5]
    labels = dict(demo_catalog.labels[qid])
    labels[f"unused-{uuid.uuid4().hex}"] = (
        1.0  # a target no earlier run used: the first call is cold
    )
    text = helpers.describe(demo_catalog, qid)
    payload = {
        "groups": [
            {
                "target": {"relevant": labels},
                "responses": [{"text": text}, {"text": "please, thanks"}],
            }
        ],
        "options": {"k": 100},
    }
    first_app = make_client(app_kwargs={"cache": redis_cache})
    assert first_app.get("/readyz").json()["cache"] == {"backend": "redis", "degraded": False}
    cold = first_app.post("/attribute", json=payload).json()
    assert cold["stats"]["cache_hits"] == 0 and cold["stats"]["encoded"] > 0
    assert redis_cache.written and all(redis_client.exists(key) for key in redis_cache.written)
    # A second app has an empty in-process LRU: hits can only come from Redis.
    second_cache = RecordingCache(
        create_cache(
            redis_cache.inner.url, ttl_s=600, memory_items=1000, timeout_s=1.0, retry_interval_s=1.0
        )
    )
    try:
        second_app = make_client(app_kwargs={"cache": second_cache})
        warm = second_app.post("/attribute", json=payload).json()
    finally:
        second_cache.close()
    assert warm["stats"]["cache_hits"] == warm["stats"]["unique_queries"] > 0
    assert warm["stats"]["encoded"] == 0
    assert warm["groups"] == cold["groups"]
