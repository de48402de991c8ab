"""service/engine/batcher.py: EncodeBatcher merges concurrent callers into shared encoder
calls."""

from __future__ import annotations

import asyncio
import threading

import numpy as np

from service.engine import EncodeBatcher


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
