"""Where CPU work runs: never on the event loop. One helper for every blocking stage."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import anyio

T = TypeVar("T")


async def run_sync(function: Callable[..., T], *args: object) -> T:
    """Run `function(*args)` on a worker thread and await its result."""
    return await anyio.to_thread.run_sync(function, *args)


__all__ = ["run_sync"]
