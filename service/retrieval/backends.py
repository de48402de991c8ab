"""Encoder backends: the names a retriever config may give (`backend = ...`) and the record an
index manifest keeps about a non-PyTorch encoder.

- ``torch``: sentence-transformers in-process (the default; what every index was built with
  before backends existed).
- ``onnx``: the same model exported to ONNX (fp32), run by onnxruntime without torch.
- ``onnx-int8``: that export with dynamically quantised int8 weights (faster on CPUs, close
  but not equal to fp32: its agreement with PyTorch is measured, see docs/BENCHMARKS.md).
- ``remote``: an OpenAI-compatible ``/v1/embeddings`` server (Text Embeddings Inference,
  Infinity, vLLM) serving the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TORCH = "torch"
ONNX = "onnx"
ONNX_INT8 = "onnx-int8"
REMOTE = "remote"
BACKENDS = (TORCH, ONNX, ONNX_INT8, REMOTE)
ONNX_BACKENDS = (ONNX, ONNX_INT8)
BM25 = "bm25"
"""The backend (and index type) name manifests give a lexical index."""


@dataclass(frozen=True)
class EncoderRecord:
    """What an index manifest records about a non-PyTorch encoder backend."""

    backend: str
    quantization: str = "none"
    checksum: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    artifact_dir: Path | None = None
    """A directory copied into the index as ``encoder/`` (the ONNX export), if any."""


def encoder_record(encoder: object) -> EncoderRecord | None:
    """The backend record of an encoder that has one (ONNX, remote); None for PyTorch and the
    test hash encoder."""
    describe = getattr(encoder, "index_record", None)
    if describe is None:
        return None
    record = describe()
    return record if isinstance(record, EncoderRecord) else None


__all__ = [
    "BACKENDS",
    "BM25",
    "ONNX",
    "ONNX_BACKENDS",
    "ONNX_INT8",
    "REMOTE",
    "TORCH",
    "EncoderRecord",
    "encoder_record",
]
