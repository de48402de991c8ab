"""MemoryScoreCache: LRU order and bound, TTL, stats, and a thread-safety smoke test."""

from __future__ import annotations

import random
import threading
from collections import OrderedDict

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.cache import MemoryScoreCache, ScoreCache


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_is_a_score_cache_and_never_degraded() -> None:
    cache = MemoryScoreCache(4)
    assert isinstance(cache, ScoreCache)
    assert cache.backend == "memory"
    assert cache.degraded is False
    assert cache.ping() is True


def test_get_many_keeps_order_and_reports_misses() -> None:
    cache = MemoryScoreCache(10)
    cache.set_many({"a": 1.0, "b": 0.25})
    assert cache.get_many(["b", "x", "a", "b"]) == [0.25, None, 1.0, 0.25]
    assert cache.get_many([]) == []
    assert cache.stats() == {"hits": 3, "misses": 1, "errors": 0}


def test_evicts_least_recently_used_first() -> None:
    cache = MemoryScoreCache(3)
    cache.set_many({"a": 1.0, "b": 2.0, "c": 3.0})
    assert cache.get_many(["a"]) == [1.0]  # a is now the most recent
    cache.set_many({"d": 4.0})  # evicts b, the least recent
    assert cache.keys() == ["c", "a", "d"]
    assert cache.get_many(["a", "b", "c", "d"]) == [1.0, None, 3.0, 4.0]
    cache.set_many({"c": 30.0})  # overwrite refreshes recency too
    cache.set_many({"e": 5.0})
    assert cache.keys() == ["d", "c", "e"]
    assert cache.get_many(["c"]) == [30.0]


def test_a_batch_larger_than_the_bound_keeps_its_newest_items() -> None:
    cache = MemoryScoreCache(2)
    cache.set_many({f"k{i}": float(i) for i in range(5)})
    assert cache.keys() == ["k3", "k4"]


@pytest.mark.parametrize("max_items", [0, -1])
def test_rejects_a_non_positive_bound(max_items: int) -> None:
    with pytest.raises(ValueError, match="max_items"):
        MemoryScoreCache(max_items)


operations = st.lists(
    st.one_of(
        st.tuples(st.just("set"), st.lists(st.integers(0, 12), max_size=5)),
        st.tuples(st.just("get"), st.lists(st.integers(0, 12), max_size=5)),
    ),
    max_size=40,
)


@given(st.integers(1, 6), operations)
def test_matches_a_reference_lru_and_never_exceeds_its_bound(
    max_items: int, ops: list[tuple[str, list[int]]]
) -> None:
    cache = MemoryScoreCache(max_items)
    model: OrderedDict[str, float] = OrderedDict()
    for step, (op, ids) in enumerate(ops):
        keys = [f"k{i}" for i in ids]
        if op == "set":
            items = {key: float(step * 100 + i) for i, key in enumerate(keys)}
            cache.set_many(items)
            for key, value in items.items():
                model[key] = value
                model.move_to_end(key)
            while len(model) > max_items:
                model.popitem(last=False)
        else:
            expected = []
            for key in keys:
                expected.append(model.get(key))
                if key in model:
                    model.move_to_end(key)
            assert cache.get_many(keys) == expected
        assert len(cache) <= max_items
        assert cache.keys() == list(model)


def test_entries_expire_after_ttl() -> None:
    clock = FakeClock()
    cache = MemoryScoreCache(10, ttl_s=60.0, clock=clock)
    cache.set_many({"a": 1.0})
    clock.now += 59.0
    cache.set_many({"b": 2.0})
    assert cache.get_many(["a", "b"]) == [1.0, 2.0]
    clock.now += 1.0
    assert cache.get_many(["a", "b"]) == [None, 2.0]
    assert "a" not in cache.keys()  # expired entries are dropped, not just hidden
    clock.now += 60.0
    assert cache.get_many(["b"]) == [None]


def test_without_ttl_entries_do_not_expire() -> None:
    clock = FakeClock()
    cache = MemoryScoreCache(10, clock=clock)
    cache.set_many({"a": 1.0})
    clock.now += 10**9
    assert cache.get_many(["a"]) == [1.0]


def test_thread_safety_smoke() -> None:
    max_items = 64

    def value_of(key: str) -> float:
        return int(key[1:]) / 7.0

    cache = MemoryScoreCache(max_items)
    errors: list[BaseException] = []
    wrong: list[tuple[str, float | None]] = []
    start = threading.Barrier(8)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            start.wait()
            for _ in range(400):
                keys = [f"k{rng.randrange(200)}" for _ in range(rng.randrange(1, 8))]
                if rng.random() < 0.5:
                    cache.set_many({key: value_of(key) for key in keys})
                else:
                    for key, value in zip(keys, cache.get_many(keys), strict=True):
                        if value is not None and value != value_of(key):
                            wrong.append((key, value))
                assert len(cache) <= max_items
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert not wrong
    assert 0 < len(cache) <= max_items
    stats = cache.stats()
    assert stats["hits"] > 0 and stats["misses"] > 0
