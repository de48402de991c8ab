"""The score-cache interface and its key scheme.

A cached value is the retrieval score (e.g. NDCG@k) of one partial query under one retriever
configuration. Everything that can change that score is part of the key, so a stale index, a
different `k` or search depth can never answer for another.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

KEY_PREFIX = "ospo:v1:"


def cache_key(
    *,
    retriever: str,
    encoder: str,
    index_version: str,
    k: int,
    target: str,
    pool: str,
    query: str,
    depth: int = 0,
) -> str:
    """The cache key of one partial-query score: "ospo:v1:" + sha256 hex.

    Each field is hashed with its byte length in front, so no field can bleed into its
    neighbour ("ab" + "c" and "a" + "bc" give different keys).
    """
    digest = hashlib.sha256()
    fields = (retriever, encoder, index_version, str(int(k)), str(int(depth)), target, pool, query)
    for field in fields:
        data = field.encode("utf-8", "surrogatepass")
        digest.update(b"%d:" % len(data))
        digest.update(data)
    return KEY_PREFIX + digest.hexdigest()


@runtime_checkable
class ScoreCache(Protocol):
    """What the engine needs from a score cache. Implementations never raise on backend faults."""

    backend: str
    """The configured backend: "redis" or "memory" (whether it works is `degraded`)."""

    @property
    def degraded(self) -> bool:
        """True while the configured backend fails and an in-process fallback answers."""
        ...

    def get_many(self, keys: Sequence[str]) -> list[float | None]:
        """Values for `keys` in order (None for a miss), in one round trip."""
        ...

    def set_many(self, items: Mapping[str, float]) -> None:
        """Store all `items` in one round trip (pipeline)."""
        ...

    def ping(self) -> bool:
        """Whether the backend answers right now."""
        ...

    def stats(self) -> dict[str, int]:
        """Counters for metrics: "hits", "misses", "errors" (all monotonic)."""
        ...

    def close(self) -> None:
        """Release connections; the cache must not be used afterwards."""
        ...
