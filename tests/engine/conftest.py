"""Engine fixtures: a small demo catalog indexed with the HashEncoder (fast, deterministic),
wrapped in a minimal stand-in for the retrieval registry so these tests exercise the engine
alone."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from service.cache import MemoryScoreCache
from service.errors import UnknownRetriever
from service.retrieval.catalog import Catalog
from service.retrieval.demo import build_demo_catalog
from service.retrieval.encoder import HashEncoder
from service.retrieval.index import VectorIndex, build_index


class CountingEncoder:
    """HashEncoder that records every call, to count encoder round trips."""

    def __init__(self, dim: int = 256) -> None:
        self._inner = HashEncoder(dim)
        self.name = self._inner.name
        self.dim = dim
        self.calls: list[int] = []

    def encode(self, texts, batch_size: int = 256) -> np.ndarray:
        self.calls.append(len(texts))
        return self._inner.encode(texts, batch_size)


class CountingIndex:
    """A VectorIndex that counts batched searches."""

    def __init__(self, inner: VectorIndex) -> None:
        self.inner = inner
        self.manifest = inner.manifest
        self.ids = inner.ids
        self.searches = 0

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        self.searches += 1
        return self.inner.search(vectors, k)


@dataclass
class StubRetriever:
    name: str
    encoder: CountingEncoder
    index: CountingIndex
    catalog: Catalog

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
    def __init__(self, retriever: StubRetriever) -> None:
        self.retriever = retriever

    def get(self, name: str) -> StubRetriever:
        if name != self.retriever.name:
            raise UnknownRetriever(f"no retriever {name!r}", field="options.retriever")
        return self.retriever

    def names(self) -> list[str]:
        return [self.retriever.name]


@pytest.fixture(scope="session")
def small_catalog() -> Catalog:
    return build_demo_catalog(seed=0, products_per_category=30, queries_per_category=4)


@pytest.fixture(scope="session")
def hash_index(small_catalog: Catalog, tmp_path_factory: pytest.TempPathFactory) -> VectorIndex:
    out: Path = tmp_path_factory.mktemp("engine-index") / "index"
    return build_index(small_catalog, HashEncoder(256), "flat", out, progress=False)


@pytest.fixture
def retriever(small_catalog: Catalog, hash_index: VectorIndex) -> StubRetriever:
    return StubRetriever("default", CountingEncoder(256), CountingIndex(hash_index), small_catalog)


@pytest.fixture
def registry(retriever: StubRetriever) -> StubRegistry:
    return StubRegistry(retriever)


@pytest.fixture
def cache() -> MemoryScoreCache:
    return MemoryScoreCache(10_000, None)
