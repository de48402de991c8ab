"""ONNX backends (onnx, onnx-int8): the export agrees with PyTorch on the demo catalog's partial
queries, the index records and carries its encoder, and every mismatch refuses with one line.

The exports and their demo indexes are built once into the session data dir (reused across
sessions through OSPO_TEST_DATA_DIR), like the PyTorch demo index."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from service.retrieval.agreement import agreement, demo_responses
from service.retrieval.encoder import EncoderLoadError
from service.retrieval.index import ENCODER_DIR, IndexMismatchError, load_index
from service.retrieval.onnx_encoder import META_FILE, OnnxEncoder, OnnxExportInfo
from service.retrieval.onnx_export import FP32_MIN_COSINE, INT8_QUANTIZATION
from service.retrieval.registry import Retriever, RetrieverRegistry, RetrieverSpec

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def registry(ospo_test_data_dir: Path) -> RetrieverRegistry:
    return RetrieverRegistry.load(
        [
            RetrieverSpec(name="torch"),
            RetrieverSpec(name="onnx", backend="onnx"),
            RetrieverSpec(name="int8", backend="onnx-int8"),
        ],
        ospo_test_data_dir,
    )


@pytest.fixture(scope="module")
def responses(registry: RetrieverRegistry) -> list[tuple[str, str]]:
    return demo_responses(registry.get("torch").catalog, queries=6, per_query=8)


def test_manifests_record_backend_quantisation_exporter_and_checksum(
    registry: RetrieverRegistry,
) -> None:
    torch, onnx, int8 = (registry.get(n) for n in ("torch", "onnx", "int8"))
    assert torch.index.manifest.backend == "torch" and torch.index.manifest.format == 1
    for retriever, quantization in ((onnx, "none"), (int8, INT8_QUANTIZATION)):
        manifest = retriever.index.manifest
        assert (manifest.backend, manifest.quantization, manifest.format) == (
            retriever.backend,
            quantization,
            2,
        )
        assert manifest.encoder == "all-MiniLM-L6-v2" and manifest.dim == 384
        versions = manifest.details["exporter"]["versions"]
        assert {"torch", "onnx", "onnxruntime", "transformers"} <= set(versions)
        assert len(manifest.encoder_checksum) == 64
        # The index carries the encoder that encoded its documents, and queries use it.
        assert isinstance(retriever.encoder, OnnxEncoder)
        assert retriever.encoder.path == retriever.index.path / ENCODER_DIR  # type: ignore[union-attr,operator]
        assert retriever.encoder.checksum == manifest.encoder_checksum
    # A backend is part of the index version, hence of every cache key.
    versions = {r.index.manifest.version for r in (torch, onnx, int8)}
    assert len(versions) == 3


def test_fp32_export_agrees_with_pytorch(
    registry: RetrieverRegistry, responses: list[tuple[str, str]]
) -> None:
    report = agreement(registry.get("torch"), registry.get("onnx"), responses)
    assert report.partial_queries > 500
    assert report.min_cosine is not None and report.min_cosine >= FP32_MIN_COSINE
    assert report.mean_abs_delta_ndcg <= 1e-4
    assert report.ordering_identical >= 0.95


def test_fp32_documents_agree_too(registry: RetrieverRegistry) -> None:
    catalog = registry.get("torch").catalog
    passages = [p.passage() for p in catalog.products[:200]]
    a = registry.get("torch").encoder.encode(passages)
    b = registry.get("onnx").encoder.encode(passages)
    assert float(np.min(np.sum(a * b, axis=1))) >= FP32_MIN_COSINE


def test_int8_agreement_stays_within_its_measured_envelope(
    registry: RetrieverRegistry, responses: list[tuple[str, str]]
) -> None:
    """int8 weights move MiniLM's embeddings by ~1% of cosine, which moves NDCG and the order
    of close segment credits (docs/BENCHMARKS.md has the figures). This guards against an
    export that gets worse than measured, e.g. per-tensor scales or a saturating kernel."""
    report = agreement(registry.get("torch"), registry.get("int8"), responses)
    assert report.min_cosine is not None and report.min_cosine >= 0.9
    assert report.mean_cosine is not None and report.mean_cosine >= 0.985
    assert report.mean_abs_delta_ndcg <= 0.04
    assert report.ordering_identical >= 0.2


def test_loading_under_another_backend_refuses_with_one_line(
    registry: RetrieverRegistry,
) -> None:
    path = registry.get("int8").index.path
    assert path is not None
    for backend in ("torch", "onnx"):
        with pytest.raises(IndexMismatchError) as info:
            load_index(path, expected_encoder="all-MiniLM-L6-v2", expected_backend=backend)
        message = str(info.value)
        assert "\n" not in message and "onnx-int8 backend" in message and backend in message
    torch_path = registry.get("torch").index.path
    with pytest.raises(IndexMismatchError, match="built with the torch backend"):
        RetrieverRegistry.load(
            [RetrieverSpec(backend="onnx", index_dir=str(torch_path))], path.parent.parent
        )


def test_a_changed_export_refuses_to_load(registry: RetrieverRegistry, tmp_path: Path) -> None:
    source = registry.get("int8").encoder.path  # type: ignore[attr-defined]
    copy = tmp_path / "export"
    shutil.copytree(source, copy)
    OnnxEncoder.load(copy)  # an intact copy loads
    meta = json.loads((copy / META_FILE).read_text())
    (copy / META_FILE).write_text(json.dumps({**meta, "max_seq_length": 128}))
    with pytest.raises(EncoderLoadError, match="does not match its checksum"):
        OnnxEncoder.load(copy)
    (copy / META_FILE).write_text(json.dumps(meta))
    with open(copy / "model.onnx", "ab") as model:
        model.write(b"\0")
    with pytest.raises(EncoderLoadError, match="does not match its checksum"):
        OnnxEncoder.load(copy)
    (copy / META_FILE).unlink()
    with pytest.raises(EncoderLoadError, match="has no encoder.json"):
        OnnxExportInfo.read(copy)


def test_an_index_whose_encoder_was_swapped_refuses(
    registry: RetrieverRegistry, tmp_path: Path
) -> None:
    index_path = registry.get("onnx").index.path
    assert index_path is not None
    copy = tmp_path / "index"
    shutil.copytree(index_path, copy)
    shutil.rmtree(copy / ENCODER_DIR)
    shutil.copytree(registry.get("int8").encoder.path, copy / ENCODER_DIR)  # type: ignore[attr-defined]
    with pytest.raises(IndexMismatchError, match="is not the encoder its manifest records"):
        RetrieverRegistry.load(
            [RetrieverSpec(backend="onnx", index_dir=str(copy))], tmp_path / "data"
        )


def test_encoder_edge_cases(registry: RetrieverRegistry) -> None:
    encoder = registry.get("onnx").encoder
    assert encoder.encode([]).shape == (0, 384)
    texts = ["", "a", "cotton cardigan", "cotton cardigan", "x " * 600]
    vectors = encoder.encode(texts)
    assert vectors.shape == (5, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(vectors[2], vectors[3])
    # Bucketing by length does not change a text's vector.
    alone = encoder.encode(["cotton cardigan"])[0]
    np.testing.assert_allclose(alone, vectors[2], atol=1e-6)


def test_search_through_the_retriever(registry: RetrieverRegistry) -> None:
    retriever: Retriever = registry.get("int8")
    hits = retriever.search(["cotton cardigan for women"], k=5)[0]
    assert len(hits) == 5 and all(score <= 1.0001 for _, score in hits)
