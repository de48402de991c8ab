"""Retrieval: catalogs, encoders, faiss indexes and the retriever registry.

The only part of ospo importing torch, sentence-transformers and faiss (torch and
sentence-transformers only when a model is actually loaded).
"""

from __future__ import annotations

from service.retrieval.build import build_index_cli, ensure_demo_catalog, load_catalog_source
from service.retrieval.catalog import (
    Catalog,
    CatalogError,
    Product,
    catalog_fingerprint,
    load_catalog,
    save_catalog,
)
from service.retrieval.demo import build_demo_catalog, specific_query
from service.retrieval.encoder import (
    Encoder,
    EncoderLoadError,
    HashEncoder,
    SentenceTransformerEncoder,
    canonical_encoder_name,
    load_encoder,
    resolve_encoder,
)
from service.retrieval.index import (
    IndexBuildError,
    IndexLoadError,
    IndexManifest,
    IndexMismatchError,
    VectorIndex,
    build_index,
    load_index,
)
from service.retrieval.loaders import load_esci, load_hm, load_wands
from service.retrieval.registry import (
    Retriever,
    RetrieverRegistry,
    RetrieverSpec,
    UnknownRetrieverError,
)

__all__ = [
    "Catalog",
    "CatalogError",
    "Encoder",
    "EncoderLoadError",
    "HashEncoder",
    "IndexBuildError",
    "IndexLoadError",
    "IndexManifest",
    "IndexMismatchError",
    "Product",
    "Retriever",
    "RetrieverRegistry",
    "RetrieverSpec",
    "SentenceTransformerEncoder",
    "UnknownRetrieverError",
    "VectorIndex",
    "build_demo_catalog",
    "build_index",
    "build_index_cli",
    "canonical_encoder_name",
    "catalog_fingerprint",
    "ensure_demo_catalog",
    "load_catalog",
    "load_catalog_source",
    "load_encoder",
    "load_esci",
    "load_hm",
    "load_index",
    "load_wands",
    "resolve_encoder",
    "save_catalog",
    "specific_query",
]
