"""EncodeBatcher merges concurrent callers into shared encoder calls; Admission bounds work
and refuses past its queue with Overloaded."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from service.engine import Admission, EncodeBatcher
from service.errors import Overloaded


def fake_encode(calls: list[list[str]]):
    def encode(texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        return np.array([[float(len(t)), float(sum(map(ord, t)))] for t in texts], dtype=np.float32)

    return encode


def test_concurrent_callers_share_one_encode_call():
    calls: list[list[str]] = []
    sizes: list[int] = []
    batcher = EncodeBatcher(window_s=0.02, on_batch=sizes.append)
    encode = fake_encode(calls)

    async def main():
        return await asyncio.gather(
            batcher.encode("m", encode, ["a", "bb"]),
            batcher.encode("m", encode, ["bb", "ccc"]),
            batcher.encode("m", encode, ["dddd"]),
        )

    first, second, third = asyncio.run(main())
    assert len(calls) == 1 and sorted(calls[0]) == ["a", "bb", "ccc", "dddd"]  # deduplicated
    assert sizes == [4]
    assert first[:, 0].tolist() == [1.0, 2.0]
    assert second[:, 0].tolist() == [2.0, 3.0]
    assert third[:, 0].tolist() == [4.0]


def test_callers_arriving_during_an_encode_go_out_together_next():
    calls: list[list[str]] = []
    release = threading.Event()
    inner = fake_encode(calls)

    def slow_encode(texts: list[str]) -> np.ndarray:
        if not calls:
            release.wait(5)
        return inner(texts)

    batcher = EncodeBatcher(window_s=0.0)

    async def main():
        first = asyncio.ensure_future(batcher.encode("m", slow_encode, ["one"]))
        await asyncio.sleep(0.05)
        later = [
            asyncio.ensure_future(batcher.encode("m", slow_encode, [t])) for t in ("x", "y", "z")
        ]
        await asyncio.sleep(0.05)
        release.set()
        await asyncio.gather(first, *later)

    asyncio.run(main())
    assert calls == [["one"], ["x", "y", "z"]]


def test_encoder_errors_reach_every_waiter_and_lanes_are_separate():
    def broken(texts: list[str]) -> np.ndarray:
        raise RuntimeError("encoder down")

    calls: list[list[str]] = []
    batcher = EncodeBatcher(window_s=0.01)

    async def main():
        return await asyncio.gather(
            batcher.encode("bad", broken, ["a"]),
            batcher.encode("bad", broken, ["b"]),
            batcher.encode("good", fake_encode(calls), ["c"]),
            return_exceptions=True,
        )

    bad1, bad2, good = asyncio.run(main())
    assert isinstance(bad1, RuntimeError) and isinstance(bad2, RuntimeError)
    assert good.shape == (1, 2)


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
