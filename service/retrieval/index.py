"""faiss vector indexes over a catalog's products: build, save (atomically), load and search.

An index directory holds ``index.faiss`` (always a CPU index on disk), ``ids.json`` (row ->
product id) and ``manifest.json`` (encoder, dimension, normalisation, catalog name and hash,
index type, size, format, the encoder backend and a version hash of all that). Vectors are
L2-normalised and every index uses inner product, so scores are cosines. Loading checks
everything it can and fails with `IndexLoadError`: one line naming the file and the problem.

Backends other than PyTorch ("onnx", "onnx-int8", "remote") write format 2 manifests that
also record the quantisation, the exporter's versions and a checksum of the encoder artifact;
an ONNX index carries its encoder in ``encoder/`` next to the index, so the model that encoded
the documents is the one that encodes the queries. PyTorch indexes keep format 1 and their
version hash, so indexes built before backends existed load unchanged (same cache keys).

One module past the usual size: the manifest, the atomic build and the checked load are one
on-disk format, and each half is only right next to the other.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import tempfile
import threading
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import faiss as _faiss
import numpy as np
from tqdm import tqdm

from service.errors import ResourceError
from service.retrieval.backends import TORCH, encoder_record
from service.retrieval.catalog import Catalog, replace_dir
from service.retrieval.encoder import Encoder, canonical_encoder_name

# The type stubs found for faiss lag behind faiss 1.15 (SearchParameters*, GPU attributes).
faiss: Any = _faiss

logger = logging.getLogger(__name__)

INDEX_FILE = "index.faiss"
IDS_FILE = "ids.json"
MANIFEST_FILE = "manifest.json"
ENCODER_DIR = "encoder"
INDEX_FORMAT = 2
"""The newest manifest format this version reads and writes (format 1: torch-only fields)."""
TORCH_INDEX_FORMAT = 1
INDEX_TYPES = ("flat", "hnsw", "ivf")
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 200
HNSW_EF_SEARCH_MIN = 64
# faiss GPU indexes answer at most this many neighbours per query; larger k runs on the CPU copy.
GPU_MAX_K = 2048


class IndexLoadError(ResourceError, ValueError):
    """An index directory cannot be used (one line naming the file and the problem)."""


class IndexMismatchError(IndexLoadError):
    """The index was built with another encoder or over another catalog than configured."""


class IndexBuildError(ResourceError, ValueError):
    """An index cannot be built from the given catalog and options."""


def index_version(
    encoder: str,
    catalog_hash: str,
    index_type: str,
    fmt: int = TORCH_INDEX_FORMAT,
    backend: str = TORCH,
    encoder_checksum: str = "",
) -> str:
    """The version hash (part of every cache key). PyTorch indexes hash exactly what they did
    before backends existed; any other backend adds itself and its artifact's checksum, so an
    int8 index never shares cached scores with an fp32 one."""
    parts = [canonical_encoder_name(encoder), catalog_hash, index_type, str(fmt)]
    if backend != TORCH:
        parts += [backend, encoder_checksum]
    return hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class IndexManifest:
    encoder: str
    dim: int
    normalized: bool
    catalog: str
    catalog_hash: str
    index_type: str
    size: int
    version: str
    format: int
    backend: str = TORCH
    """How the documents (and so the queries) are encoded: torch | onnx | onnx-int8 | remote,
    or bm25 for a lexical index."""
    quantization: str = "none"
    encoder_checksum: str = ""
    """sha256 of the encoder artifact (ONNX model + tokenizer + pooling) the index was built with."""
    details: dict[str, Any] = field(default_factory=dict)
    """Backend specifics: exporter versions and agreement probe (onnx), the served model name
    (remote), scoring parameters (bm25)."""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.format <= TORCH_INDEX_FORMAT:
            for name in _FORMAT2_FIELDS:
                data.pop(name)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: Path) -> IndexManifest:
        required = [f.name for f in fields(cls) if f.name not in _FORMAT2_FIELDS]
        if isinstance(data.get("format"), int) and data["format"] >= 2:
            required += list(_FORMAT2_FIELDS)
        missing = [name for name in required if name not in data]
        if missing:
            raise IndexLoadError(f"index manifest {source} lacks field(s): {', '.join(missing)}")
        try:
            details = data.get("details", {})
            if not isinstance(details, dict):
                raise TypeError("details")
            return cls(
                encoder=str(data["encoder"]),
                dim=int(data["dim"]),
                normalized=bool(data["normalized"]),
                catalog=str(data["catalog"]),
                catalog_hash=str(data["catalog_hash"]),
                index_type=str(data["index_type"]),
                size=int(data["size"]),
                version=str(data["version"]),
                format=int(data["format"]),
                backend=str(data.get("backend", TORCH)),
                quantization=str(data.get("quantization", "none")),
                encoder_checksum=str(data.get("encoder_checksum", "")),
                details=dict(details),
            )
        except (TypeError, ValueError):
            raise IndexLoadError(f"index manifest {source} has a field of the wrong type") from None

    def expected_version(self) -> str:
        return index_version(
            self.encoder,
            self.catalog_hash,
            self.index_type,
            self.format,
            self.backend,
            self.encoder_checksum,
        )


_FORMAT2_FIELDS = ("backend", "quantization", "encoder_checksum", "details")


def _ivf_nprobe(nlist: int) -> int:
    return min(nlist, max(8, nlist // 4))


def _move_to_gpu(index: Any, index_type: str) -> Any | None:
    """A GPU copy of a flat or IVF index when faiss sees a GPU (HNSW has no GPU version)."""
    if index_type == "hnsw" or not hasattr(faiss, "StandardGpuResources"):
        return None
    try:
        if faiss.get_num_gpus() <= 0:
            return None
        resources = faiss.StandardGpuResources()
        gpu_index = faiss.index_cpu_to_gpu(resources, 0, index)
        gpu_index.referenced_objects = [resources]
        logger.info("index moved to GPU 0")
        return gpu_index
    except Exception:  # a GPU that cannot be used is a reason to stay on the CPU, not to fail
        logger.warning(
            "could not move the %s index to the GPU; searching on the CPU",
            index_type,
            exc_info=True,
        )
        return None


class VectorIndex:
    """A loaded index: `search` maps query vectors to (scores, rows); `ids[row]` is the product."""

    def __init__(
        self, index: Any, ids: list[str], manifest: IndexManifest, path: Path | None = None
    ) -> None:
        self.manifest = manifest
        self.ids = ids
        self.path = path
        self._cpu_index = index
        self._gpu_index = _move_to_gpu(index, manifest.index_type)
        self._gpu_lock = threading.Lock()
        self._nprobe = (
            _ivf_nprobe(faiss.extract_index_ivf(index).nlist) if manifest.index_type == "ivf" else 0
        )

    @property
    def size(self) -> int:
        return len(self.ids)

    @property
    def on_gpu(self) -> bool:
        return self._gpu_index is not None

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product for each row of `vectors`: (scores float32 (n, k'), rows int64
        (n, k')) with k' = min(k, size); a row is -1 where the index found fewer neighbours."""
        queries = np.ascontiguousarray(vectors, dtype=np.float32)
        if queries.ndim == 1:
            queries = queries.reshape(1, -1)
        if queries.ndim != 2 or queries.shape[1] != self.manifest.dim:
            raise ValueError(
                f"query vectors have shape {vectors.shape}, expected (n, {self.manifest.dim})"
            )
        k = min(int(k), self.size)
        if k <= 0 or queries.shape[0] == 0:
            return np.zeros((queries.shape[0], 0), np.float32), np.zeros(
                (queries.shape[0], 0), np.int64
            )
        if self._gpu_index is not None and k <= GPU_MAX_K:
            with self._gpu_lock:
                scores, rows = self._gpu_index.search(queries, k)
        elif self.manifest.index_type == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=max(k, HNSW_EF_SEARCH_MIN))
            scores, rows = self._cpu_index.search(queries, k, params=params)
        elif self.manifest.index_type == "ivf":
            params = faiss.SearchParametersIVF(nprobe=self._nprobe)
            scores, rows = self._cpu_index.search(queries, k, params=params)
        else:
            scores, rows = self._cpu_index.search(queries, k)
        return np.asarray(scores, dtype=np.float32), np.asarray(rows, dtype=np.int64)


def _new_faiss_index(index_type: str, vectors: np.ndarray) -> Any:
    count, dim = vectors.shape
    if index_type == "flat":
        index = faiss.IndexFlatIP(dim)
    elif index_type == "hnsw":
        index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    else:
        nlist = max(1, min(count, round(math.sqrt(count))))
        # index_factory makes the IVF index own its quantizer (no dangling Python reference).
        index = faiss.index_factory(dim, f"IVF{nlist},Flat", faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
    index.add(vectors)
    return index


def encode_products(
    catalog: Catalog, encoder: Encoder, batch_size: int = 256, progress: bool = True
) -> np.ndarray:
    """Normalised float32 vectors of every product's passage, in catalog order."""
    texts = [product.passage() for product in catalog.products]
    chunks: list[np.ndarray] = []
    with tqdm(
        total=len(texts),
        desc=f"encoding {catalog.name} ({encoder.name})",
        unit="product",
        disable=not progress,
    ) as bar:
        for start in range(0, len(texts), batch_size):
            batch = texts[start : start + batch_size]
            chunks.append(encoder.encode(batch, batch_size=batch_size))
            bar.update(len(batch))
    vectors = np.ascontiguousarray(np.concatenate(chunks), dtype=np.float32)
    faiss.normalize_L2(vectors)
    return vectors


def build_index(
    catalog: Catalog,
    encoder: Encoder,
    index_type: str,
    out_dir: Path | str,
    progress: bool = True,
    batch_size: int = 256,
    overwrite: bool = True,
    vectors: np.ndarray | None = None,
) -> VectorIndex:
    """Encode the catalog and write an index directory at out_dir, atomically (built in a
    temporary sibling, then renamed). With overwrite=False an index that appeared at out_dir
    meanwhile (another process won the race) is kept and loaded instead. `vectors` may supply
    precomputed product vectors (catalog order)."""
    if index_type not in INDEX_TYPES:
        raise IndexBuildError(f"index type {index_type!r} is not one of {', '.join(INDEX_TYPES)}")
    if not catalog.products:
        raise IndexBuildError(f"catalog {catalog.name!r} has no products")
    ids = [product.id for product in catalog.products]
    if len(set(ids)) != len(ids):
        raise IndexBuildError(f"catalog {catalog.name!r} has duplicate product ids")
    out = Path(out_dir)
    if vectors is None:
        vectors = encode_products(catalog, encoder, batch_size=batch_size, progress=progress)
    elif vectors.shape != (len(ids), encoder.dim):
        raise IndexBuildError(
            f"precomputed vectors have shape {vectors.shape}, expected ({len(ids)}, {encoder.dim})"
        )
    index = _new_faiss_index(index_type, np.ascontiguousarray(vectors, dtype=np.float32))
    catalog_hash = catalog.fingerprint()
    record = encoder_record(encoder)
    backend = record.backend if record else TORCH
    fmt = TORCH_INDEX_FORMAT if record is None else INDEX_FORMAT
    checksum = record.checksum if record else ""
    manifest = IndexManifest(
        encoder=canonical_encoder_name(encoder.name),
        dim=encoder.dim,
        normalized=True,
        catalog=catalog.name,
        catalog_hash=catalog_hash,
        index_type=index_type,
        size=len(ids),
        version=index_version(encoder.name, catalog_hash, index_type, fmt, backend, checksum),
        format=fmt,
        backend=backend,
        quantization=record.quantization if record else "none",
        encoder_checksum=checksum,
        details=dict(record.details) if record else {},
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        if record is not None and record.artifact_dir is not None:
            # The encoder travels with the index: loading it later needs no export step and
            # cannot pick up a different model than the one that encoded the documents.
            shutil.copytree(record.artifact_dir, tmp / ENCODER_DIR)
        faiss.write_index(index, str(tmp / INDEX_FILE))
        (tmp / IDS_FILE).write_text(json.dumps(ids), encoding="utf-8")
        (tmp / MANIFEST_FILE).write_text(
            json.dumps(manifest.to_dict(), indent=2) + "\n", encoding="utf-8"
        )
        if overwrite:
            replace_dir(tmp, out)
        elif not _publish_new(tmp, out):
            logger.info("index %s appeared while building; using it", out)
            return load_index(
                out,
                expected_encoder=manifest.encoder,
                expected_catalog_hash=catalog_hash,
                expected_backend=backend,
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info(
        "built %s index of %d products at %s (version %s)",
        index_type,
        len(ids),
        out,
        manifest.version,
    )
    return VectorIndex(index, ids, manifest, out)


def _publish_new(tmp: Path, out: Path) -> bool:
    """Rename tmp to out unless out already holds something; True when ours was published."""
    try:
        tmp.rename(out)
    except OSError:
        if out.exists():
            return False
        raise
    return True


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise IndexLoadError(f"{what} {path} is missing")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IndexLoadError(f"{what} {path} is not valid JSON ({type(exc).__name__})") from None


def read_manifest(root: Path, index_types: tuple[str, ...] = INDEX_TYPES) -> IndexManifest:
    """The checked manifest of an index directory (IndexLoadError with one line otherwise)."""
    if not root.is_dir():
        raise IndexLoadError(f"index directory {root} does not exist")
    manifest_path = root / MANIFEST_FILE
    raw = _read_json(manifest_path, "index manifest")
    if not isinstance(raw, dict):
        raise IndexLoadError(f"index manifest {manifest_path} is not a JSON object")
    fmt = raw.get("format")
    if isinstance(fmt, int) and fmt > INDEX_FORMAT:
        raise IndexLoadError(
            f"index at {root} has format {fmt}; this version of ospo reads formats up to {INDEX_FORMAT}"
        )
    manifest = IndexManifest.from_dict(raw, manifest_path)
    if manifest.index_type not in index_types:
        raise IndexLoadError(
            f"index manifest {manifest_path} names unknown index type {manifest.index_type!r}"
        )
    if manifest.version != manifest.expected_version():
        raise IndexLoadError(
            f"index manifest {manifest_path} is inconsistent: its version hash does not match its fields"
        )
    return manifest


def check_manifest(
    manifest: IndexManifest,
    root: Path,
    expected_encoder: str | None = None,
    expected_catalog_hash: str | None = None,
    expected_backend: str | None = None,
) -> None:
    """IndexMismatchError (one line) when the index was built for another configuration."""
    if expected_encoder is not None:
        wanted = canonical_encoder_name(expected_encoder)
        if wanted != manifest.encoder:
            raise IndexMismatchError(
                f"index at {root} was built with encoder {manifest.encoder}, but the retriever is configured with {wanted}"
            )
    if expected_backend is not None and expected_backend != manifest.backend:
        raise IndexMismatchError(
            f"index at {root} was built with the {manifest.backend} backend, but the retriever is configured with backend {expected_backend}"
        )
    if expected_catalog_hash is not None and expected_catalog_hash != manifest.catalog_hash:
        raise IndexMismatchError(
            f"index at {root} was built over catalog {manifest.catalog} ({manifest.catalog_hash[:12]}), "
            f"but the retriever's catalog has hash {expected_catalog_hash[:12]}"
        )


def load_index(
    path: Path | str,
    expected_encoder: str | None = None,
    expected_catalog_hash: str | None = None,
    expected_backend: str | None = None,
) -> VectorIndex:
    """Load an index directory, checking the manifest against the configured encoder, backend
    and catalog (each when given) and the files against each other."""
    root = Path(path)
    manifest = read_manifest(root)
    check_manifest(manifest, root, expected_encoder, expected_catalog_hash, expected_backend)
    manifest_path = root / MANIFEST_FILE

    ids_path = root / IDS_FILE
    ids = _read_json(ids_path, "index id map")
    if not isinstance(ids, list) or not all(isinstance(item, str) for item in ids):
        raise IndexLoadError(f"index id map {ids_path} is not a JSON list of product ids")

    index_path = root / INDEX_FILE
    if not index_path.is_file():
        raise IndexLoadError(f"index file {index_path} is missing")
    if index_path.stat().st_size == 0:
        raise IndexLoadError(f"index file {index_path} is empty")
    try:
        index = faiss.read_index(str(index_path))
    except Exception:  # faiss raises RuntimeError with a multi-line C++ trace
        raise IndexLoadError(
            f"index file {index_path} is truncated or corrupt (faiss cannot read it)"
        ) from None
    if index.ntotal != len(ids):
        raise IndexLoadError(
            f"index id map {ids_path} has {len(ids)} ids but {index_path} holds {index.ntotal} vectors"
        )
    if index.ntotal != manifest.size:
        raise IndexLoadError(
            f"index manifest {manifest_path} says size {manifest.size} but {index_path} holds {index.ntotal} vectors"
        )
    if index.d != manifest.dim:
        raise IndexLoadError(
            f"index manifest {manifest_path} says dim {manifest.dim} but {index_path} has dim {index.d}"
        )
    return VectorIndex(index, ids, manifest, root)
