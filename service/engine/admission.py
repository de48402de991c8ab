"""Admission control: at most `max_inflight` requests do work at once, at most `max_queue`
wait for a slot, and anything past that is refused at once with Overloaded (503 +
Retry-After) instead of letting latency grow without bound."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from service.errors import Overloaded


class Admission:
    """A bounded semaphore with a bounded waiting room; created inside the event loop."""

    def __init__(
        self,
        max_inflight: int,
        max_queue: int,
        retry_after_s: float = 1.0,
        on_change: Callable[[int, int], None] | None = None,
    ) -> None:
        if max_inflight < 1:
            raise ValueError("max_inflight must be >= 1")
        self.max_inflight = max_inflight
        self.max_queue = max_queue
        self.retry_after_s = retry_after_s
        self._slots = asyncio.Semaphore(max_inflight)
        self._inflight = 0
        self._waiting = 0
        self._on_change = on_change

    @property
    def inflight(self) -> int:
        return self._inflight

    @property
    def waiting(self) -> int:
        return self._waiting

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self._inflight, self._waiting)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a work slot for the body; raises Overloaded when the queue is full. A
        cancelled waiter (client gone) leaves the queue without taking a slot."""
        if self._slots.locked() or self._waiting > 0:
            if self._waiting >= self.max_queue:
                raise Overloaded(
                    f"the service is at capacity ({self.max_inflight} requests running, "
                    f"{self._waiting} queued, max_queue={self.max_queue}); retry later",
                    retry_after_s=self.retry_after_s,
                )
        self._waiting += 1
        self._changed()
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
            self._changed()
        self._inflight += 1
        self._changed()
        try:
            yield
        finally:
            self._inflight -= 1
            self._slots.release()
            self._changed()


__all__ = ["Admission"]
