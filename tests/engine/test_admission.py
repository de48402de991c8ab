"""service/engine/admission.py: Admission bounds work and refuses past its queue with
Overloaded; a cancelled waiter leaves the queue."""

from __future__ import annotations

import asyncio

import pytest

from service.engine import Admission
from service.errors import Overloaded


def test_admission_bounds_inflight_and_refuses_past_the_queue():
    changes: list[tuple[int, int]] = []
    admission = Admission(
        max_inflight=1, max_queue=1, retry_after_s=2.5, on_change=lambda *c: changes.append(c)
    )
    order: list[str] = []

    async def work(name: str, hold: float) -> None:
        async with admission.slot():
            order.append(f"start {name}")
            await asyncio.sleep(hold)
            order.append(f"end {name}")

    async def main():
        first = asyncio.ensure_future(work("a", 0.05))
        await asyncio.sleep(0.01)
        second = asyncio.ensure_future(work("b", 0.0))
        await asyncio.sleep(0.01)
        assert admission.inflight == 1 and admission.waiting == 1
        with pytest.raises(Overloaded) as info:
            await work("c", 0.0)
        await asyncio.gather(first, second)
        return info.value

    refused = asyncio.run(main())
    assert order == ["start a", "end a", "start b", "end b"]
    assert refused.status == 503 and refused.headers() == {"Retry-After": "2"}
    assert "max_queue=1" in refused.message
    assert admission.inflight == 0 and admission.waiting == 0
    assert max(waiting for _, waiting in changes) == 1


def test_a_cancelled_waiter_leaves_the_queue():
    admission = Admission(max_inflight=1, max_queue=4)

    async def main():
        async with admission.slot():
            waiter = asyncio.ensure_future(admission.slot().__aenter__())
            await asyncio.sleep(0.01)
            assert admission.waiting == 1
            waiter.cancel()
            await asyncio.sleep(0.01)
            assert admission.waiting == 0
        async with admission.slot():
            assert admission.inflight == 1

    asyncio.run(main())
