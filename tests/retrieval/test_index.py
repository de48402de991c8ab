"""faiss indexes: build/load round trips for every type, search semantics, and one-line
errors for every way an index directory can be unusable."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from service.retrieval.catalog import Catalog
from service.retrieval.encoder import HashEncoder
from service.retrieval.index import (
    INDEX_TYPES,
    IndexBuildError,
    IndexLoadError,
    IndexMismatchError,
    build_index,
    index_version,
    load_index,
)


@pytest.fixture(scope="module")
def sub_catalog(demo_catalog: Catalog) -> Catalog:
    return replace(demo_catalog, name="demo-sub", products=demo_catalog.products[:400])


@pytest.mark.parametrize("index_type", INDEX_TYPES)
def test_round_trip(sub_catalog: Catalog, tmp_path: Path, index_type: str) -> None:
    encoder = HashEncoder(64)
    built = build_index(sub_catalog, encoder, index_type, tmp_path / "idx", progress=False)
    assert sorted(p.name for p in (tmp_path / "idx").iterdir()) == [
        "ids.json",
        "index.faiss",
        "manifest.json",
    ]
    loaded = load_index(tmp_path / "idx", expected_encoder="hash:64")
    manifest = loaded.manifest
    assert manifest == built.manifest
    assert (manifest.encoder, manifest.dim, manifest.normalized, manifest.index_type) == (
        "hash:64",
        64,
        True,
        index_type,
    )
    assert (manifest.catalog, manifest.catalog_hash, manifest.size) == (
        "demo-sub",
        sub_catalog.fingerprint(),
        400,
    )
    assert manifest.version == index_version("hash:64", sub_catalog.fingerprint(), index_type)
    assert loaded.ids == [p.id for p in sub_catalog.products]

    # A product's own passage finds the product first (approximate indexes included).
    probes = [3, 77, 250]
    vectors = encoder.encode([sub_catalog.products[i].passage() for i in probes])
    scores, rows = loaded.search(vectors, 5)
    assert rows.shape == (3, 5) and scores.dtype == np.float32
    assert rows[:, 0].tolist() == probes
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-4)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)


def test_flat_search_is_exact(sub_catalog: Catalog, tmp_path: Path) -> None:
    encoder = HashEncoder(64)
    index = build_index(sub_catalog, encoder, "flat", tmp_path / "idx", progress=False)
    products = encoder.encode([p.passage() for p in sub_catalog.products])
    query = encoder.encode(["waterproof leather hiking boots for women"])
    scores, rows = index.search(query, 10)
    brute = products @ query[0]
    np.testing.assert_allclose(scores[0], np.sort(brute)[::-1][:10], atol=1e-5)
    np.testing.assert_allclose(brute[rows[0]], scores[0], atol=1e-5)


def test_k_is_clamped_and_edge_cases(tiny_catalog: Catalog, tmp_path: Path) -> None:
    encoder = HashEncoder(32)
    index = build_index(tiny_catalog, encoder, "flat", tmp_path / "idx", progress=False)
    scores, rows = index.search(encoder.encode(["boots", "chair"]), 1000)
    assert rows.shape == (2, 8) and sorted(rows[0].tolist()) == list(range(8))
    assert index.search(encoder.encode(["boots"]), 0)[1].shape == (1, 0)
    assert index.search(np.zeros((0, 32), np.float32), 5)[1].shape == (0, 0)
    assert index.search(encoder.encode(["boots"])[0], 2)[1].shape == (1, 2)  # a single vector
    with pytest.raises(ValueError, match=r"expected \(n, 32\)"):
        index.search(np.zeros((1, 16), np.float32), 3)


def test_ivf_on_a_tiny_catalog_returns_minus_one_for_missing_rows(
    tiny_catalog: Catalog, tmp_path: Path
) -> None:
    encoder = HashEncoder(32)
    index = build_index(tiny_catalog, encoder, "ivf", tmp_path / "idx", progress=False)
    scores, rows = index.search(encoder.encode(["boots"]), 8)
    assert rows.shape == (1, 8)
    found = rows[0][rows[0] >= 0]
    assert len(set(found.tolist())) == len(found) and set(rows[0].tolist()) <= set(range(-1, 8))


def test_build_errors(tiny_catalog: Catalog, tmp_path: Path) -> None:
    with pytest.raises(IndexBuildError, match="not one of flat, hnsw, ivf"):
        build_index(tiny_catalog, HashEncoder(32), "lsh", tmp_path / "idx", progress=False)
    with pytest.raises(IndexBuildError, match="has no products"):
        build_index(
            replace(tiny_catalog, products=[]),
            HashEncoder(32),
            "flat",
            tmp_path / "idx",
            progress=False,
        )
    assert not (tmp_path / "idx").exists()


def test_overwrite_false_keeps_the_first_index(tiny_catalog: Catalog, tmp_path: Path) -> None:
    encoder = HashEncoder(32)
    first = build_index(
        tiny_catalog, encoder, "flat", tmp_path / "idx", progress=False, overwrite=False
    )
    before = (tmp_path / "idx" / "index.faiss").stat().st_mtime_ns
    second = build_index(
        tiny_catalog, encoder, "flat", tmp_path / "idx", progress=False, overwrite=False
    )
    assert second.manifest == first.manifest
    assert (tmp_path / "idx" / "index.faiss").stat().st_mtime_ns == before
    assert [p.name for p in tmp_path.iterdir()] == ["idx"]


@pytest.fixture
def built_dir(tiny_catalog: Catalog, tmp_path: Path) -> Path:
    build_index(tiny_catalog, HashEncoder(32), "flat", tmp_path / "idx", progress=False)
    return tmp_path / "idx"


def _one_line(exc: pytest.ExceptionInfo[IndexLoadError]) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_encoder_mismatch_message(built_dir: Path) -> None:
    with pytest.raises(IndexMismatchError) as info:
        load_index(built_dir, expected_encoder="minilm")
    assert _one_line(info) == (
        f"index at {built_dir} was built with encoder hash:32, but the retriever is configured with all-MiniLM-L6-v2"
    )
    assert load_index(built_dir, expected_encoder="hash:32").size == 8


def test_catalog_mismatch_message(built_dir: Path) -> None:
    with pytest.raises(IndexMismatchError, match="was built over catalog small") as info:
        load_index(built_dir, expected_catalog_hash="0" * 64)
    _one_line(info)


def test_truncated_index_file(built_dir: Path) -> None:
    path = built_dir / "index.faiss"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(IndexLoadError) as info:
        load_index(built_dir)
    assert _one_line(info) == f"index file {path} is truncated or corrupt (faiss cannot read it)"


def test_missing_pieces(built_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(IndexLoadError, match="does not exist") as info:
        load_index(tmp_path / "nowhere")
    _one_line(info)
    (built_dir / "index.faiss").unlink()
    with pytest.raises(IndexLoadError, match=r"index file .*index.faiss is missing"):
        load_index(built_dir)
    (built_dir / "ids.json").unlink()
    with pytest.raises(IndexLoadError, match=r"index id map .*ids.json is missing"):
        load_index(built_dir)
    (built_dir / "manifest.json").unlink()
    with pytest.raises(IndexLoadError, match=r"index manifest .*manifest.json is missing"):
        load_index(built_dir)


def test_ids_count_must_match(built_dir: Path) -> None:
    ids = json.loads((built_dir / "ids.json").read_text())
    (built_dir / "ids.json").write_text(json.dumps(ids[:-1]))
    with pytest.raises(IndexLoadError) as info:
        load_index(built_dir)
    assert _one_line(info) == (
        f"index id map {built_dir / 'ids.json'} has 7 ids but {built_dir / 'index.faiss'} holds 8 vectors"
    )


def test_manifest_problems(built_dir: Path) -> None:
    path = built_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    path.write_text("{not json")
    with pytest.raises(IndexLoadError, match="is not valid JSON"):
        load_index(built_dir)
    path.write_text(json.dumps({k: v for k, v in manifest.items() if k != "dim"}))
    with pytest.raises(IndexLoadError, match=r"lacks field\(s\): dim"):
        load_index(built_dir)
    path.write_text(json.dumps({**manifest, "encoder": "all-MiniLM-L6-v2"}))
    with pytest.raises(IndexLoadError, match="version hash does not match"):
        load_index(built_dir)
    path.write_text(json.dumps({**manifest, "format": 99}))
    with pytest.raises(IndexLoadError, match="has format 99"):
        load_index(built_dir)
