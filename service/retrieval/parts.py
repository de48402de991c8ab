"""From a retriever spec to its (encoder, index): where the index lives, and how each kind
and backend gets both parts — a cached or newly built faiss index for torch, the index's own
ONNX export for onnx / onnx-int8, a checked server for remote, BM25 for the lexical kind.

Every path ends in an encoder that encodes queries exactly as the index's documents were
encoded; a mismatch refuses with one line (`IndexMismatchError`).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from service.retrieval.backends import BM25, ONNX_BACKENDS, REMOTE, TORCH
from service.retrieval.catalog import Catalog
from service.retrieval.encoder import (
    Encoder,
    EncoderLoadError,
    canonical_encoder_name,
    load_encoder,
)
from service.retrieval.index import (
    ENCODER_DIR,
    IndexLoadError,
    IndexMismatchError,
    VectorIndex,
    build_index,
    load_index,
)

if TYPE_CHECKING:
    from service.retrieval.lexical import LexicalIndex
    from service.retrieval.registry import RetrieverSpec

logger = logging.getLogger(__name__)
T = TypeVar("T")


def index_dir_for(
    data_dir: Path, catalog: Catalog, encoder_name: str, index_type: str, backend: str = TORCH
) -> Path:
    """Where the registry keeps the index of (catalog, encoder, index type, backend); PyTorch
    indexes keep the directory they had before backends existed."""
    parts = [canonical_encoder_name(encoder_name), catalog.fingerprint(), index_type]
    if backend != TORCH:
        parts.append(backend)
    short = hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()[:12]
    return Path(data_dir) / "indexes" / f"{catalog.name}-{short}"


def _cached_or_built(
    path: Path,
    load: Callable[[Path], T],
    build: Callable[[Path, bool], T],
    errors: tuple[type[Exception], ...] = (IndexLoadError,),
) -> T:
    """The index cached at ``path`` when it loads; otherwise one built there by
    ``build(path, overwrite)``. A cached index that fails to load (an older format, another
    encoder, a torn write) is rebuilt in place with a warning naming why: the cache is ours to
    replace, and refusing to start over it would help no one."""
    if path.exists():
        try:
            return load(path)
        except errors as exc:
            logger.warning("rebuilding the cached index at %s: %s", path, exc)
    started = time.perf_counter()
    built = build(path, path.exists())
    logger.info("index %s ready in %.1f s", path, time.perf_counter() - started)
    return built


def _cached_or_built_index(
    catalog: Catalog,
    encoder: Encoder,
    index_type: str,
    data_dir: Path,
    progress: bool,
    backend: str = TORCH,
) -> VectorIndex:
    return _cached_or_built(
        index_dir_for(data_dir, catalog, encoder.name, index_type, backend),
        lambda path: load_index(
            path,
            expected_encoder=encoder.name,
            expected_catalog_hash=catalog.fingerprint(),
            expected_backend=backend,
        ),
        lambda path, overwrite: build_index(
            catalog, encoder, index_type, path, progress=progress, overwrite=overwrite
        ),
    )


def _onnx_encoder_of(index: VectorIndex, backend: str) -> Encoder:
    """The ONNX encoder an index carries, checked against the index's manifest."""
    from service.retrieval.onnx_encoder import OnnxEncoder

    assert index.path is not None
    encoder = OnnxEncoder.load(index.path / ENCODER_DIR)
    manifest = index.manifest
    if encoder.checksum != manifest.encoder_checksum or encoder.backend != backend:
        raise IndexMismatchError(
            f"index at {index.path}: its {ENCODER_DIR}/ ({encoder.backend}, {encoder.checksum[:12]}) "
            f"is not the encoder its manifest records ({manifest.backend}, {manifest.encoder_checksum[:12]})"
        )
    if encoder.name != manifest.encoder or encoder.dim != manifest.dim:
        raise IndexMismatchError(
            f"index at {index.path}: its {ENCODER_DIR}/ holds {encoder.name} ({encoder.dim}-d), "
            f"the manifest {manifest.encoder} ({manifest.dim}-d)"
        )
    return encoder


def _onnx_retriever_parts(
    spec: RetrieverSpec, catalog: Catalog, data_dir: Path, progress: bool
) -> tuple[Encoder, VectorIndex]:
    """(encoder, index) of an onnx / onnx-int8 retriever: the index's own export, made (once)
    from the sentence-transformers model when the index does not exist yet."""
    name = canonical_encoder_name(spec.encoder)

    def load(path: Path) -> tuple[Encoder, VectorIndex]:
        index = load_index(
            path,
            expected_encoder=name,
            expected_catalog_hash=catalog.fingerprint(),
            expected_backend=spec.backend,
        )
        return _onnx_encoder_of(index, spec.backend), index

    def build(path: Path, overwrite: bool) -> tuple[Encoder, VectorIndex]:
        from service.retrieval.onnx_encoder import OnnxEncoder
        from service.retrieval.onnx_export import ensure_onnx_export

        encoder = OnnxEncoder.load(ensure_onnx_export(spec.encoder, spec.backend, data_dir))
        index = build_index(
            catalog, encoder, spec.index_type, path, progress=progress, overwrite=overwrite
        )
        return _onnx_encoder_of(index, spec.backend), index

    if spec.index_dir:
        return load(Path(spec.index_dir).expanduser())
    return _cached_or_built(
        index_dir_for(data_dir, catalog, name, spec.index_type, spec.backend),
        load,
        build,
        errors=(IndexLoadError, EncoderLoadError),
    )


def _remote_encoder(spec: RetrieverSpec) -> Encoder:
    from service.retrieval.remote import RemoteEncoder

    assert spec.remote_url is not None
    return RemoteEncoder.connect(
        name=canonical_encoder_name(spec.encoder),
        url=spec.remote_url,
        model=spec.remote_model,
        batch_size=spec.remote_batch_size,
        timeout_s=spec.remote_timeout_s,
        retries=spec.remote_retries,
        concurrency=spec.remote_concurrency,
        api_key_env=spec.remote_api_key_env,
    )


def _check_remote_index(index: VectorIndex, encoder: Encoder) -> None:
    """The server must serve the model the index's documents were encoded with."""
    recorded = index.manifest.details.get("remote_model")
    model = getattr(encoder, "model", None)
    if recorded != model:
        raise IndexMismatchError(
            f"index at {index.path} was built with remote model {recorded}, but the retriever asks the server for {model}"
        )
    if index.manifest.dim != encoder.dim:
        raise IndexMismatchError(
            f"index at {index.path} holds {index.manifest.dim}-d vectors, but the server returns {encoder.dim}-d ones"
        )


def _lexical_retriever_parts(
    spec: RetrieverSpec, catalog: Catalog, data_dir: Path
) -> tuple[Encoder, LexicalIndex]:
    from service.retrieval.lexical import (
        LEXICAL_ENCODER,
        LexicalQueryEncoder,
        build_lexical_index,
        load_lexical_index,
    )

    if spec.index_dir:
        index = load_lexical_index(
            Path(spec.index_dir).expanduser(), expected_catalog_hash=catalog.fingerprint()
        )
        return LexicalQueryEncoder(index), index
    found = _cached_or_built(
        index_dir_for(data_dir, catalog, LEXICAL_ENCODER, BM25, BM25),
        lambda path: load_lexical_index(path, expected_catalog_hash=catalog.fingerprint()),
        lambda path, overwrite: build_lexical_index(catalog, path, overwrite=overwrite),
    )
    return LexicalQueryEncoder(found), found


def retriever_parts(
    spec: RetrieverSpec, catalog: Catalog, data_dir: Path, progress: bool
) -> tuple[Encoder, VectorIndex | LexicalIndex]:
    if spec.kind == BM25:
        return _lexical_retriever_parts(spec, catalog, data_dir)
    if spec.backend in ONNX_BACKENDS:
        return _onnx_retriever_parts(spec, catalog, data_dir, progress)
    if spec.backend == REMOTE:
        encoder = _remote_encoder(spec)
    else:
        encoder = load_encoder(spec.encoder, data_dir=data_dir)
    if spec.index_dir:
        index = load_index(
            Path(spec.index_dir).expanduser(),
            expected_encoder=encoder.name,
            expected_catalog_hash=catalog.fingerprint(),
            expected_backend=spec.backend,
        )
    else:
        index = _cached_or_built_index(
            catalog, encoder, spec.index_type, data_dir, progress, spec.backend
        )
    if spec.backend == REMOTE:
        _check_remote_index(index, encoder)
    return encoder, index


__all__ = ["index_dir_for", "retriever_parts"]
