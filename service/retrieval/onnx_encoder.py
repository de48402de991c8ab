"""ONNX encoders (backends ``onnx`` and ``onnx-int8``): a sentence-transformers model exported
once to ONNX (pooling and normalisation inside the graph) and run by onnxruntime, with the
model's own fast tokenizer. Running one needs onnxruntime, tokenizers and numpy only, so the
slim image has no torch; *making* an export needs torch (service.retrieval.onnx_export).

An export directory holds ``model.onnx``, ``tokenizer.json`` and ``encoder.json`` (model name,
backend, quantisation, pooling, sequence length, exporter versions, the agreement with
PyTorch measured at export time, and a checksum over all of it). Loading recomputes the
checksum: a changed file refuses to load with one line, never encodes silently differently.

Texts are tokenised without padding and run in buckets of equal token length, so no position
is padding: the attention mask is all ones and pooling sees exactly the text's tokens.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from service.retrieval.backends import ONNX_BACKENDS, EncoderRecord
from service.retrieval.encoder import EncoderLoadError, canonical_encoder_name

logger = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
META_FILE = "encoder.json"
EXPORT_FORMAT = 1
EXPORTS_ENV = "OSPO_ONNX_EXPORTS"
"""Directories (os.pathsep-separated) searched for prebuilt exports before the data dir; the
slim image points it at the export baked in at build time."""
THREADS_ENV = "OSPO_CPU_THREADS"
TOKENS_PER_RUN = 4096
"""Rows per onnxruntime call = this // token length: large enough to keep the int8 GEMMs
efficient, small enough that long documents do not build huge attention tensors."""


@dataclass(frozen=True)
class OnnxExportInfo:
    """The contents of an export's encoder.json."""

    model: str
    backend: str
    quantization: str
    dim: int
    max_seq_length: int
    pooling: str
    normalize: bool
    do_lower_case: bool
    inputs: list[str]
    output: str
    checksum: str
    exporter: dict[str, Any] = field(default_factory=dict)
    agreement: dict[str, Any] = field(default_factory=dict)
    format: int = EXPORT_FORMAT

    def functional(self) -> dict[str, Any]:
        """Everything besides the files that changes what the encoder computes."""
        return {
            "model": self.model,
            "backend": self.backend,
            "quantization": self.quantization,
            "dim": self.dim,
            "max_seq_length": self.max_seq_length,
            "pooling": self.pooling,
            "normalize": self.normalize,
            "do_lower_case": self.do_lower_case,
            "inputs": list(self.inputs),
            "output": self.output,
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def read(cls, directory: Path) -> OnnxExportInfo:
        path = directory / META_FILE
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise EncoderLoadError(f"ONNX export {directory} has no {META_FILE}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise EncoderLoadError(
                f"ONNX export metadata {path} is not valid JSON ({type(exc).__name__})"
            ) from None
        try:
            info = cls(
                model=str(raw["model"]),
                backend=str(raw["backend"]),
                quantization=str(raw["quantization"]),
                dim=int(raw["dim"]),
                max_seq_length=int(raw["max_seq_length"]),
                pooling=str(raw["pooling"]),
                normalize=bool(raw["normalize"]),
                do_lower_case=bool(raw["do_lower_case"]),
                inputs=[str(name) for name in raw["inputs"]],
                output=str(raw["output"]),
                checksum=str(raw["checksum"]),
                exporter=dict(raw.get("exporter", {})),
                agreement=dict(raw.get("agreement", {})),
                format=int(raw.get("format", EXPORT_FORMAT)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise EncoderLoadError(
                f"ONNX export metadata {path} lacks or mistypes field {exc}"
            ) from None
        if info.format > EXPORT_FORMAT:
            raise EncoderLoadError(
                f"ONNX export {directory} has format {info.format}; this version of ospo reads format {EXPORT_FORMAT}"
            )
        if info.backend not in ONNX_BACKENDS:
            raise EncoderLoadError(
                f"ONNX export {directory} names backend {info.backend!r}, not one of {', '.join(ONNX_BACKENDS)}"
            )
        return info


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def artifact_checksum(directory: Path, functional: dict[str, Any]) -> str:
    """sha256 over the model file, the tokenizer file and the functional settings."""
    digest = hashlib.sha256()
    for name in (MODEL_FILE, TOKENIZER_FILE):
        path = directory / name
        if not path.is_file():
            raise EncoderLoadError(f"ONNX export {directory} has no {name}")
        digest.update(f"{name}\x00{_file_digest(path)}\x00".encode())
    digest.update(json.dumps(functional, sort_keys=True, separators=(",", ":")).encode())
    return digest.hexdigest()


def export_slug(name: str, backend: str) -> str:
    """Directory name of an export: the model name made path-safe (a short hash keeps two
    models whose paths share a basename apart), then the backend."""
    canonical = canonical_encoder_name(name)
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", canonical.rstrip("/").rsplit("/", 1)[-1]).strip("-")
    if "/" in canonical or base != canonical:
        base += "-" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:8]
    return f"{base or 'model'}-{backend}"


def export_search_path(data_dir: Path) -> list[Path]:
    """Where prebuilt exports are looked for: OSPO_ONNX_EXPORTS, then <data_dir>/models/onnx."""
    paths = [Path(p).expanduser() for p in os.environ.get(EXPORTS_ENV, "").split(os.pathsep) if p]
    return [*paths, Path(data_dir) / "models" / "onnx"]


def find_onnx_export(name: str, backend: str, data_dir: Path) -> Path | None:
    """The first export of `name` for `backend` on the search path, or None."""
    slug = export_slug(name, backend)
    for directory in export_search_path(data_dir):
        candidate = directory / slug
        if (candidate / META_FILE).is_file():
            return candidate
    return None


def default_threads() -> int | None:
    value = os.environ.get(THREADS_ENV, "").strip()
    try:
        threads = int(value)
    except ValueError:
        return None
    return threads if threads >= 1 else None


class OnnxEncoder:
    """An ONNX export run by onnxruntime on the CPU. Calls are serialised by a lock (on a
    few cores parallel runs gain nothing, and each run already uses the configured threads)."""

    def __init__(self, session: Any, tokenizer: Any, info: OnnxExportInfo, path: Path) -> None:
        self._session = session
        self._tokenizer = tokenizer
        self._lock = threading.Lock()
        self.info = info
        self.path = path
        self.name = info.model
        self.dim = info.dim
        self.backend = info.backend
        self.checksum = info.checksum

    @classmethod
    def load(
        cls, directory: Path | str, threads: int | None = None, verify: bool = True
    ) -> OnnxEncoder:
        """Load an export (checksum verified unless `verify=False`); EncoderLoadError with one
        line when it is incomplete, changed or unreadable."""
        path = Path(directory)
        info = OnnxExportInfo.read(path)
        if verify:
            actual = artifact_checksum(path, info.functional())
            if actual != info.checksum:
                raise EncoderLoadError(
                    f"ONNX export {path} does not match its checksum (files changed after export)"
                )
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise EncoderLoadError(
                f"the {info.backend} backend needs onnxruntime and tokenizers ({exc})"
            ) from None
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        threads = threads or default_threads()
        if threads:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Spinning worker threads burn the cores a busy neighbour (the trainer) needs; on a
        # loaded 2-core machine int8 encoding measured 1.5x faster with spinning off.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            session = ort.InferenceSession(
                str(path / MODEL_FILE), options, providers=["CPUExecutionProvider"]
            )
            tokenizer = Tokenizer.from_file(str(path / TOKENIZER_FILE))
        except Exception as exc:  # onnxruntime and tokenizers raise their own types
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EncoderLoadError(f"ONNX export {path} cannot be loaded: {reason}") from None
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=info.max_seq_length)
        names = {node.name for node in session.get_inputs()}
        if not set(info.inputs) <= names:
            raise EncoderLoadError(
                f"ONNX export {path}: model inputs {sorted(names)} lack {sorted(set(info.inputs) - names)}"
            )
        logger.info(
            "loaded %s encoder %s from %s (%s threads)",
            info.backend,
            info.model,
            path,
            threads or "default",
        )
        return cls(session, tokenizer, info, path)

    def encode(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Unit vectors, rows in input order. `batch_size` is accepted for the Encoder
        protocol; rows per run follow the token length instead (no padding to amortise)."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        inputs = [text.lower() for text in texts] if self.info.do_lower_case else list(texts)
        with self._lock:
            encodings = self._tokenizer.encode_batch(inputs, add_special_tokens=True)
            buckets: dict[int, list[int]] = {}
            for row, encoding in enumerate(encodings):
                buckets.setdefault(len(encoding.ids), []).append(row)
            for length in sorted(buckets):
                rows = buckets[length]
                step = max(1, TOKENS_PER_RUN // max(1, length))
                for start in range(0, len(rows), step):
                    chunk = rows[start : start + step]
                    ids = np.asarray([encodings[r].ids for r in chunk], dtype=np.int64)
                    feeds = {"input_ids": ids}
                    if "attention_mask" in self.info.inputs:
                        feeds["attention_mask"] = np.ones_like(ids)
                    if "token_type_ids" in self.info.inputs:
                        feeds["token_type_ids"] = np.asarray(
                            [encodings[r].type_ids for r in chunk], dtype=np.int64
                        )
                    (vectors,) = self._session.run([self.info.output], feeds)
                    out[chunk] = vectors
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
        return out

    def index_record(self) -> EncoderRecord:
        """What an index built with this encoder records (and carries: the export itself)."""
        return EncoderRecord(
            backend=self.backend,
            quantization=self.info.quantization,
            checksum=self.checksum,
            details={"exporter": self.info.exporter, "agreement": self.info.agreement},
            artifact_dir=self.path,
        )


__all__ = [
    "EXPORTS_ENV",
    "META_FILE",
    "MODEL_FILE",
    "TOKENIZER_FILE",
    "OnnxEncoder",
    "OnnxExportInfo",
    "artifact_checksum",
    "export_search_path",
    "export_slug",
    "find_onnx_export",
]
