"""Hash-encoder retrievers for tests of the engine and the reward-model game: a small demo
catalog indexed once per session with the HashEncoder (fast, deterministic, no model), seen
through a counting stand-in registry (`registry`, `retriever`: the engine alone, every encoder
call and search counted) or through the real RetrieverRegistry (`hash_registry`: for apps).

Fixtures: `small_catalog`, `hash_index`, `retriever`, `registry`, `hash_registry`, `cache`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

HASH_DIM = 256


class CountingEncoder:
    """HashEncoder that records every call, to count encoder round trips."""

    def __init__(self, dim: int = HASH_DIM) -> None:
        from service.retrieval.encoder import HashEncoder

        self._inner = HashEncoder(dim)
        self.name = self._inner.name
        self.dim = dim
        self.calls: list[int] = []

    def encode(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        self.calls.append(len(texts))
        return self._inner.encode(texts, batch_size)


class CountingIndex:
    """A VectorIndex that counts batched searches."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.manifest = inner.manifest
        self.ids = inner.ids
        self.searches = 0

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        self.searches += 1
        result: tuple[np.ndarray, np.ndarray] = self.inner.search(vectors, k)
        return result


@dataclass
class StubRetriever:
    name: str
    encoder: CountingEncoder
    index: CountingIndex
    catalog: Any
    lexical: bool = False  # dense: the retrieval game encodes, then searches vectors

    @property
    def searches(self) -> int:
        return self.index.searches

    def search_vectors(self, vectors: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        scores, rows = self.index.search(vectors, k)
        return [
            [(self.index.ids[r], float(s)) for s, r in zip(srow, rrow, strict=True) if r >= 0]
            for srow, rrow in zip(scores, rows, strict=True)
        ]


class StubRegistry:
    """The registry interface the engine uses, over one StubRetriever."""

    def __init__(self, retriever: StubRetriever) -> None:
        self.retriever = retriever

    def get(self, name: str) -> StubRetriever:
        from service.errors import UnknownRetriever

        if name != self.retriever.name:
            raise UnknownRetriever(f"no retriever {name!r}", field="options.retriever")
        return self.retriever

    def names(self) -> list[str]:
        return [self.retriever.name]


class CountingCache:
    """A MemoryScoreCache that counts round trips: `gets`/`sets` hold each call's size."""

    backend = "memory"
    degraded = False

    def __init__(self) -> None:
        from service.cache import MemoryScoreCache

        self.inner = MemoryScoreCache(10_000, None)
        self.gets: list[int] = []
        self.sets: list[int] = []

    def get_many(self, keys: Sequence[str]) -> list[float | None]:
        self.gets.append(len(keys))
        return self.inner.get_many(keys)

    def set_many(self, items: Mapping[str, float]) -> None:
        self.sets.append(len(items))
        self.inner.set_many(items)

    def ping(self) -> bool:
        return True


@pytest.fixture(scope="session")
def small_catalog() -> Any:
    """A small demo catalog (seed 0, 30 products and 4 queries per category)."""
    from service.retrieval.demo import build_demo_catalog

    return build_demo_catalog(seed=0, products_per_category=30, queries_per_category=4)


@pytest.fixture(scope="session")
def hash_index(small_catalog: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """`small_catalog` indexed (flat) with the HashEncoder, once per session."""
    from service.retrieval.encoder import HashEncoder
    from service.retrieval.index import build_index

    out: Path = tmp_path_factory.mktemp("hash-index") / "index"
    return build_index(small_catalog, HashEncoder(HASH_DIM), "flat", out, progress=False)


@pytest.fixture
def retriever(small_catalog: Any, hash_index: Any) -> StubRetriever:
    """The `default` retriever over `hash_index`, counting encoder calls and searches."""
    return StubRetriever(
        "default", CountingEncoder(HASH_DIM), CountingIndex(hash_index), small_catalog
    )


@pytest.fixture
def registry(retriever: StubRetriever) -> StubRegistry:
    """A stand-in registry holding `retriever` only: the engine alone, nothing loaded."""
    return StubRegistry(retriever)


@pytest.fixture(scope="session")
def hash_registry(small_catalog: Any, hash_index: Any) -> Any:
    """The real RetrieverRegistry with one `default` retriever: the HashEncoder over
    `small_catalog` (fast, no model), for apps and the reward-model game."""
    from service.retrieval.encoder import HashEncoder
    from service.retrieval.registry import Retriever, RetrieverRegistry

    retriever = Retriever("default", HashEncoder(HASH_DIM), hash_index, small_catalog)
    return RetrieverRegistry({"default": retriever})


@pytest.fixture
def cache() -> Any:
    """An empty in-process score cache."""
    from service.cache import MemoryScoreCache

    return MemoryScoreCache(10_000, None)
