"""Retrievers (encoder + index + catalog) and the registry the service hosts them in.

`RetrieverRegistry.load` gets each retriever's encoder and index from
service.retrieval.parts, which builds each missing index once under
``<data_dir>/indexes/<catalog>-<short hash of (encoder, catalog hash, index type[, backend])>``
(built in a temporary directory and renamed, so concurrent starts never see half an index),
loads it, and warms the retriever up with one search.

A retriever is dense (`kind = "dense"`: an encoder and a faiss index; the encoder runs on the
`backend` torch, onnx, onnx-int8 or remote) or lexical (`kind = "bm25"`: BM25 over the product
text; its `encoder` is the stand-in of service.retrieval.lexical and its index also answers
`search_texts`). The documents of an index are always encoded by the backend that encodes
its queries: an ONNX index carries its export, a remote one records the served model name,
and loading an index under another backend refuses with one line.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from service.errors import UnknownRetriever
from service.retrieval.backends import BACKENDS, BM25, REMOTE, TORCH
from service.retrieval.build import load_catalog_source
from service.retrieval.catalog import Catalog
from service.retrieval.encoder import MINILM, Encoder, canonical_encoder_name
from service.retrieval.index import INDEX_TYPES, VectorIndex
from service.retrieval.parts import index_dir_for, retriever_parts

if TYPE_CHECKING:
    from service.retrieval.lexical import LexicalIndex

logger = logging.getLogger(__name__)


class UnknownRetrieverError(UnknownRetriever, LookupError):
    """No retriever of that name is configured (the API answers 404)."""

    def __init__(self, name: str, available: Sequence[str]) -> None:
        self.name = name
        self.available = list(available)
        super().__init__(
            f"unknown retriever {name!r}; available: {', '.join(self.available) or 'none'}"
        )


DENSE = "dense"
KINDS = (DENSE, BM25)


@dataclass(frozen=True)
class RetrieverSpec:
    name: str = "default"
    encoder: str = MINILM
    catalog: str = "demo"
    index_type: str = "flat"
    index_dir: str | None = None
    kind: str = DENSE
    """dense (encoder + faiss) | bm25 (lexical; encoder, backend and index_type do not apply)."""
    backend: str = TORCH
    """torch | onnx | onnx-int8 | remote: how queries *and* documents are encoded."""
    remote_url: str | None = None
    """backend remote: the server's base URL (…/v1/embeddings is accepted too)."""
    remote_model: str | None = None
    """backend remote: the model name the server serves (default: `encoder`)."""
    remote_batch_size: int = 32
    remote_timeout_s: float = 30.0
    remote_retries: int = 2
    remote_concurrency: int = 4
    remote_api_key_env: str | None = None
    """backend remote: the environment variable holding the server's API key, if it needs one."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(
                f"retriever {self.name!r}: kind {self.kind!r} is not one of {', '.join(KINDS)}"
            )
        if self.backend not in BACKENDS:
            raise ValueError(
                f"retriever {self.name!r}: backend {self.backend!r} is not one of {', '.join(BACKENDS)}"
            )
        if self.kind == BM25:
            if self.backend != TORCH:
                raise ValueError(
                    f"retriever {self.name!r}: backend applies to dense retrievers, not kind bm25"
                )
            if self.index_type not in ("flat", BM25):
                raise ValueError(
                    f"retriever {self.name!r}: index_type applies to dense retrievers, not kind bm25"
                )
        elif self.index_type not in INDEX_TYPES:
            raise ValueError(
                f"retriever {self.name!r}: index type {self.index_type!r} is not one of {', '.join(INDEX_TYPES)}"
            )
        if self.backend == REMOTE and not self.remote_url:
            raise ValueError(f"retriever {self.name!r}: backend remote needs remote_url")
        if self.backend != REMOTE and self.remote_url:
            raise ValueError(
                f"retriever {self.name!r}: remote_url is set but backend is {self.backend}"
            )
        if (
            self.remote_batch_size < 1
            or self.remote_concurrency < 1
            or self.remote_retries < 0
            or not self.remote_timeout_s > 0
        ):
            raise ValueError(
                f"retriever {self.name!r}: remote_batch_size and remote_concurrency must be >= 1, "
                "remote_retries >= 0 and remote_timeout_s > 0"
            )

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> RetrieverSpec:
        """One entry of a retrievers config file ("index" is accepted for "index_type")."""
        types = {f.name: f.type for f in fields(cls)}
        values = {key: data[key] for key in types if data.get(key) is not None}
        if "index_type" not in values and data.get("index") is not None:
            values["index_type"] = data["index"]
        unknown = set(data) - set(types) - {"index"}
        if unknown:
            raise ValueError(f"retriever config has unknown field(s): {', '.join(sorted(unknown))}")
        converted: dict[str, Any] = {}
        for key, value in values.items():
            kind = str(types[key])
            try:
                if kind == "int":
                    if isinstance(value, bool) or float(value) != int(value):
                        raise ValueError
                    converted[key] = int(value)
                elif kind == "float":
                    if isinstance(value, bool):
                        raise ValueError
                    converted[key] = float(value)
                else:
                    converted[key] = str(value)
            except (TypeError, ValueError):
                raise ValueError(
                    f"retriever config field {key} must be {kind}, not {value!r}"
                ) from None
        return cls(**converted)


class SearchIndex(Protocol):
    """What a retriever needs of an index: faiss (VectorIndex) or BM25 (LexicalIndex)."""

    manifest: Any
    ids: list[str]

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...


class Retriever:
    """Search over one catalog with one encoder. Thread-safe (encoders and searches are)."""

    def __init__(
        self,
        name: str,
        encoder: Encoder,
        index: VectorIndex | LexicalIndex,
        catalog: Catalog,
    ) -> None:
        self.name = name
        self.encoder = encoder
        self.index = index
        self.catalog = catalog

    @property
    def version(self) -> str:
        return str(self.index.manifest.version)

    @property
    def backend(self) -> str:
        return str(self.index.manifest.backend)

    @property
    def lexical(self) -> bool:
        """True for BM25: `index.search_texts(texts, k)` is the search (no vectors)."""
        return self.index.manifest.backend == BM25

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self.encoder.encode(texts)

    def search_vectors(self, vectors: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """Per query row: (product id, score) best first; rows the index could not fill are dropped."""
        return self._hits(*self.index.search(vectors, k))

    def search(self, texts: Sequence[str], k: int) -> list[list[tuple[str, float]]]:
        if self.lexical:
            return self._hits(*self._lexical_index().search_texts(texts, k))
        return self.search_vectors(self.encode(texts), k)

    def _lexical_index(self) -> LexicalIndex:
        from service.retrieval.lexical import LexicalIndex

        assert isinstance(self.index, LexicalIndex)
        return self.index

    def _hits(self, scores: np.ndarray, rows: np.ndarray) -> list[list[tuple[str, float]]]:
        ids = self.index.ids
        return [
            [
                (ids[row], float(score))
                for row, score in zip(row_list, score_list, strict=True)
                if row >= 0
            ]
            for row_list, score_list in zip(rows.tolist(), scores.tolist(), strict=True)
        ]

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
            "backend": manifest.backend,
        }


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
        shared: dict[
            tuple[str, str, str, str, str], tuple[Encoder, VectorIndex | LexicalIndex]
        ] = {}
        retrievers: dict[str, Retriever] = {}
        for spec in specs:
            catalog = catalogs.get(spec.catalog)
            if catalog is None:
                catalog = catalogs[spec.catalog] = load_catalog_source(spec.catalog, data_dir)
            # Retrievers configured alike share one encoder and index; a prebuilt index_dir or a
            # remote server is loaded per retriever (each may name a different one).
            key = (
                spec.catalog,
                canonical_encoder_name(spec.encoder),
                spec.index_type,
                spec.kind,
                spec.backend,
            )
            reusable = not spec.index_dir and spec.backend != REMOTE
            parts = shared.get(key) if reusable else None
            if parts is None:
                parts = retriever_parts(spec, catalog, data_dir, progress)
                if reusable:
                    shared[key] = parts
            encoder, index = parts
            retriever = Retriever(spec.name, encoder, index, catalog)
            retriever.warm_up()
            retrievers[spec.name] = retriever
            logger.info(
                "retriever %s ready: %s (%s) over %s (%s, %d products)",
                spec.name,
                encoder.name,
                index.manifest.backend,
                catalog.name,
                index.manifest.index_type,
                len(index.ids),
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


__all__ = [
    "Retriever",
    "RetrieverRegistry",
    "RetrieverSpec",
    "SearchIndex",
    "UnknownRetrieverError",
    "index_dir_for",
]
