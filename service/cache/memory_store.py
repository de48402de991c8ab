"""An in-process, thread-safe LRU score cache with an optional TTL.

Used alone when no Redis is configured, and as the Redis store's fallback while Redis is down.
Memory is bounded by `max_items`.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence


class MemoryScoreCache:
    """Least-recently-used cache of float scores; `get_many` hits count as uses."""

    backend = "memory"

    def __init__(
        self,
        max_items: int,
        ttl_s: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {max_items}")
        if ttl_s is not None and ttl_s <= 0:
            raise ValueError(f"ttl_s must be > 0 or None, got {ttl_s}")
        self.max_items = max_items
        self.ttl_s = ttl_s
        self._clock = clock
        # key -> (value, expiry on `clock`, or None for no expiry)
        self._items: OrderedDict[str, tuple[float, float | None]] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    @property
    def degraded(self) -> bool:
        return False

    def get_many(self, keys: Sequence[str]) -> list[float | None]:
        now = self._clock() if self.ttl_s is not None else 0.0
        values: list[float | None] = []
        with self._lock:
            for key in keys:
                entry = self._items.get(key)
                if entry is None:
                    values.append(None)
                    continue
                value, expires_at = entry
                if expires_at is not None and expires_at <= now:
                    del self._items[key]
                    values.append(None)
                    continue
                self._items.move_to_end(key)
                values.append(value)
            hits = sum(value is not None for value in values)
            self._hits += hits
            self._misses += len(values) - hits
        return values

    def set_many(self, items: Mapping[str, float]) -> None:
        expires_at = self._clock() + self.ttl_s if self.ttl_s is not None else None
        with self._lock:
            for key, value in items.items():
                self._items[key] = (float(value), expires_at)
                self._items.move_to_end(key)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)

    def ping(self) -> bool:
        return True

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"hits": self._hits, "misses": self._misses, "errors": 0}

    def close(self) -> None:
        self.clear()

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def keys(self) -> list[str]:
        """Keys from least to most recently used (for inspection and tests)."""
        with self._lock:
            return list(self._items)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
