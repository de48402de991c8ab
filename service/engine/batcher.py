"""EncodeBatcher: concurrent requests' texts for the same encoder are merged into shared
encoder calls on a worker thread (dynamic micro-batching). While one call runs, new texts
queue up and go out together in the next call; an idle lane waits `window_s` first so
requests arriving together share the call."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import anyio
import numpy as np

logger = logging.getLogger(__name__)

EncodeFn = Callable[[list[str]], np.ndarray]


@dataclass
class _Pending:
    texts: list[str]
    future: asyncio.Future[np.ndarray]


@dataclass
class _Lane:
    encode: EncodeFn
    items: list[_Pending] = field(default_factory=list)
    worker: asyncio.Task[None] | None = None


class EncodeBatcher:
    """One lane (queue + worker task) per encoder key; create and use inside one event loop."""

    def __init__(
        self,
        window_s: float = 0.002,
        max_batch_texts: int = 2048,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.window_s = window_s
        self.max_batch_texts = max_batch_texts
        self._on_batch = on_batch
        self._lanes: dict[str, _Lane] = {}

    async def encode(self, key: str, encode: EncodeFn, texts: Sequence[str]) -> np.ndarray:
        """Vectors of `texts` (rows in order), computed in a call shared with other callers."""
        if not texts:
            raise ValueError("encode needs at least one text")
        loop = asyncio.get_running_loop()
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane(encode)
        item = _Pending(list(texts), loop.create_future())
        lane.items.append(item)
        if lane.worker is None or lane.worker.done():
            lane.worker = loop.create_task(self._drain(lane))
        return await item.future

    def _take(self, lane: _Lane) -> list[_Pending]:
        batch: list[_Pending] = []
        count = 0
        while lane.items and (
            not batch or count + len(lane.items[0].texts) <= self.max_batch_texts
        ):
            item = lane.items.pop(0)
            if item.future.cancelled():
                continue
            batch.append(item)
            count += len(item.texts)
        return batch

    async def _drain(self, lane: _Lane) -> None:
        if self.window_s > 0:
            await asyncio.sleep(self.window_s)
        while lane.items:
            batch = self._take(lane)
            if not batch:
                continue
            positions: dict[str, int] = {}
            for item in batch:
                for text in item.texts:
                    positions.setdefault(text, len(positions))
            unique = list(positions)
            if self._on_batch is not None:
                self._on_batch(len(unique))
            try:
                vectors = await anyio.to_thread.run_sync(lane.encode, unique)
            except Exception as exc:  # every waiter of this batch gets the encoder's error
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
                continue
            for item in batch:
                if not item.future.done():
                    rows = np.fromiter((positions[t] for t in item.texts), dtype=np.int64)
                    item.future.set_result(vectors[rows])


__all__ = ["EncodeBatcher"]
