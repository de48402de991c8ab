"""Retrievers (encoder + index + catalog) and the registry the service hosts them in.

`RetrieverRegistry.load` builds each missing index once under
``<data_dir>/indexes/<catalog>-<short hash of (encoder, catalog hash, index type)>`` (built in
a temporary directory and renamed, so concurrent starts never see half an index), loads it,
and warms the retriever up with one search.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from service.retrieval.build import load_catalog_source
from service.retrieval.catalog import Catalog
from service.retrieval.encoder import MINILM, Encoder, canonical_encoder_name, load_encoder
from service.retrieval.index import (
    INDEX_TYPES,
    IndexLoadError,
    VectorIndex,
    build_index,
    load_index,
)

logger = logging.getLogger(__name__)


class UnknownRetrieverError(LookupError):
    """No retriever of that name is configured (the API answers 404)."""

    def __init__(self, name: str, available: Sequence[str]) -> None:
        self.name = name
        self.available = list(available)
        super().__init__(
            f"unknown retriever {name!r}; available: {', '.join(self.available) or 'none'}"
        )


@dataclass(frozen=True)
class RetrieverSpec:
    name: str = "default"
    encoder: str = MINILM
    catalog: str = "demo"
    index_type: str = "flat"
    index_dir: str | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> RetrieverSpec:
        """One entry of a retrievers config file ("index" is accepted for "index_type")."""
        known = {f.name for f in fields(cls)}
        values = {key: data[key] for key in known if data.get(key) is not None}
        if "index_type" not in values and data.get("index") is not None:
            values["index_type"] = data["index"]
        unknown = set(data) - known - {"index"}
        if unknown:
            raise ValueError(f"retriever config has unknown field(s): {', '.join(sorted(unknown))}")
        return cls(**{key: str(value) for key, value in values.items()})


class Retriever:
    """Search over one catalog with one encoder. Thread-safe (encoders and faiss searches are)."""

    def __init__(self, name: str, encoder: Encoder, index: VectorIndex, catalog: Catalog) -> None:
        self.name = name
        self.encoder = encoder
        self.index = index
        self.catalog = catalog

    @property
    def version(self) -> str:
        return self.index.manifest.version

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self.encoder.encode(texts)

    def search_vectors(self, vectors: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """Per query row: (product id, score) best first; rows the index could not fill are dropped."""
        scores, rows = self.index.search(vectors, k)
        ids = self.index.ids
        return [
            [
                (ids[row], float(score))
                for row, score in zip(row_list, score_list, strict=True)
                if row >= 0
            ]
            for row_list, score_list in zip(rows.tolist(), scores.tolist(), strict=True)
        ]

    def search(self, texts: Sequence[str], k: int) -> list[list[tuple[str, float]]]:
        return self.search_vectors(self.encode(texts), k)

    def warm_up(self) -> None:
        self.search(["warm up"], k=10)

    def info(self) -> dict[str, Any]:
        """The /v1/retrievers entry."""
        manifest = self.index.manifest
        return {
            "name": self.name,
            "encoder": manifest.encoder,
            "dim": manifest.dim,
            "index": manifest.index_type,
            "size": manifest.size,
            "version": manifest.version,
            "catalog": manifest.catalog,
        }


def index_dir_for(data_dir: Path, catalog: Catalog, encoder_name: str, index_type: str) -> Path:
    payload = "\x00".join((canonical_encoder_name(encoder_name), catalog.fingerprint(), index_type))
    short = hashlib.sha256(payload.encode("utf-8")).hexdigest()[:12]
    return Path(data_dir) / "indexes" / f"{catalog.name}-{short}"


def _cached_or_built_index(
    catalog: Catalog, encoder: Encoder, index_type: str, data_dir: Path, progress: bool
) -> VectorIndex:
    path = index_dir_for(data_dir, catalog, encoder.name, index_type)
    if path.exists():
        try:
            return load_index(
                path, expected_encoder=encoder.name, expected_catalog_hash=catalog.fingerprint()
            )
        except IndexLoadError as exc:
            logger.warning("rebuilding the cached index: %s", exc)
            return build_index(
                catalog, encoder, index_type, path, progress=progress, overwrite=True
            )
    started = time.perf_counter()
    index = build_index(catalog, encoder, index_type, path, progress=progress, overwrite=False)
    logger.info("index %s ready in %.1f s", path, time.perf_counter() - started)
    return index


class RetrieverRegistry:
    """Retrievers by name."""

    def __init__(self, retrievers: Mapping[str, Retriever]) -> None:
        self._retrievers = dict(retrievers)

    @classmethod
    def load(
        cls, specs: Sequence[RetrieverSpec], data_dir: Path, progress: bool = False
    ) -> RetrieverRegistry:
        """Load (building once when missing) and warm up every configured retriever; no specs
        means one `default` retriever (packaged MiniLM, demo catalog, flat index)."""
        data_dir = Path(data_dir).expanduser()
        specs = list(specs) or [RetrieverSpec()]
        names = [spec.name for spec in specs]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"retriever name(s) configured twice: {', '.join(duplicates)}")
        catalogs: dict[str, Catalog] = {}
        indexes: dict[tuple[str, str, str], VectorIndex] = {}
        retrievers: dict[str, Retriever] = {}
        for spec in specs:
            if spec.index_type not in INDEX_TYPES:
                raise ValueError(
                    f"retriever {spec.name!r}: index type {spec.index_type!r} is not one of {', '.join(INDEX_TYPES)}"
                )
            catalog = catalogs.get(spec.catalog)
            if catalog is None:
                catalog = catalogs[spec.catalog] = load_catalog_source(spec.catalog, data_dir)
            encoder = load_encoder(spec.encoder, data_dir=data_dir)
            if spec.index_dir:
                index = load_index(
                    Path(spec.index_dir).expanduser(),
                    expected_encoder=encoder.name,
                    expected_catalog_hash=catalog.fingerprint(),
                )
            else:
                key = (spec.catalog, encoder.name, spec.index_type)
                cached = indexes.get(key)
                if cached is None:
                    cached = indexes[key] = _cached_or_built_index(
                        catalog, encoder, spec.index_type, data_dir, progress
                    )
                index = cached
            retriever = Retriever(spec.name, encoder, index, catalog)
            retriever.warm_up()
            retrievers[spec.name] = retriever
            logger.info(
                "retriever %s ready: %s over %s (%s, %d products)",
                spec.name,
                encoder.name,
                catalog.name,
                spec.index_type,
                index.size,
            )
        return cls(retrievers)

    def get(self, name: str) -> Retriever:
        try:
            return self._retrievers[name]
        except KeyError:
            raise UnknownRetrieverError(name, self.names()) from None

    def names(self) -> list[str]:
        return list(self._retrievers)

    def __contains__(self, name: object) -> bool:
        return name in self._retrievers

    def __len__(self) -> int:
        return len(self._retrievers)

    def __iter__(self) -> Iterator[Retriever]:
        return iter(self._retrievers.values())
