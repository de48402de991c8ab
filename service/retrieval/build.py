"""Catalog sources and the `ospo index build` entry point.

A catalog source string is "demo" (or None) for the embedded demo catalog, a bundle directory,
or a native dataset directory with a prefix: "esci:DIR", "wands:DIR", "hm:DIR".
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from service.retrieval.backends import BM25, ONNX_BACKENDS, TORCH
from service.retrieval.catalog import META_FILE, Catalog, CatalogError, load_catalog, save_catalog
from service.retrieval.demo import DEMO_CATALOG_NAME, build_demo_catalog
from service.retrieval.encoder import Encoder, load_encoder
from service.retrieval.index import IndexManifest, build_index
from service.retrieval.loaders import load_esci, load_hm, load_wands

logger = logging.getLogger(__name__)

DEMO_SOURCE = "demo"


def demo_catalog_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "catalogs" / DEMO_CATALOG_NAME


def ensure_demo_catalog(data_dir: Path, seed: int = 0) -> Catalog:
    """The demo catalog, also written to <data_dir>/catalogs/demo unless an identical copy is there."""
    catalog = build_demo_catalog(seed=seed)
    target = demo_catalog_dir(data_dir)
    try:
        saved = json.loads((target / META_FILE).read_text(encoding="utf-8")).get("fingerprint")
    except (OSError, ValueError, AttributeError):
        saved = None
    if saved != catalog.fingerprint():
        try:
            save_catalog(catalog, target)
            logger.info("wrote the demo catalog to %s", target)
        except OSError as exc:  # a concurrent start replacing the same directory; ours is in memory
            logger.warning("could not write the demo catalog to %s: %s", target, exc)
    return catalog


def load_catalog_source(source: str | Path | None, data_dir: Path) -> Catalog:
    """A catalog from a source string (see the module docstring)."""
    text = DEMO_SOURCE if source is None else str(source)
    if text == DEMO_SOURCE:
        return ensure_demo_catalog(data_dir)
    kind, sep, rest = text.partition(":")
    if sep and kind in ("esci", "wands", "hm"):
        if kind == "esci":
            return load_esci(rest)
        if kind == "wands":
            return load_wands(rest)
        return load_hm(rest)
    path = Path(text).expanduser()
    if not path.is_dir():
        raise CatalogError(f"catalog {text!r} is neither 'demo' nor an existing catalog directory")
    return load_catalog(path)


def build_index_cli(
    catalog_dir: str | None,
    encoder: str,
    index_type: str,
    out: Path,
    data_dir: Path,
    backend: str = TORCH,
) -> IndexManifest:
    """`ospo index build`: encode the catalog with a progress bar and write the index to `out`
    (replacing an existing index there). `backend` onnx / onnx-int8 encodes with (and copies
    into the index) an export found on the search path or made now; index_type "bm25" builds
    a lexical index (encoder and backend do not apply)."""
    started = time.perf_counter()
    data_dir = Path(data_dir)
    catalog = load_catalog_source(catalog_dir, data_dir)
    if index_type == BM25:
        from service.retrieval.lexical import build_lexical_index

        lexical = build_lexical_index(catalog, Path(out))
        logger.info(
            "built BM25 index over %s (%d products) in %.1f s",
            catalog.name,
            lexical.size,
            time.perf_counter() - started,
        )
        return lexical.manifest
    model: Encoder
    if backend in ONNX_BACKENDS:
        from service.retrieval.onnx_encoder import OnnxEncoder
        from service.retrieval.onnx_export import ensure_onnx_export

        model = OnnxEncoder.load(ensure_onnx_export(encoder, backend, data_dir))
    elif backend == TORCH:
        model = load_encoder(encoder, data_dir=data_dir)
    else:
        raise ValueError(
            f"`ospo index build` builds torch, onnx, onnx-int8 and bm25 indexes, not {backend}; "
            "a remote index is built by the service from its config"
        )
    index = build_index(catalog, model, index_type, Path(out), progress=True)
    logger.info(
        "built %s index over %s (%d products, encoder %s, backend %s) in %.1f s",
        index_type,
        catalog.name,
        index.size,
        model.name,
        backend,
        time.perf_counter() - started,
    )
    return index.manifest
