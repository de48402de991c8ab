"""The lexical retriever (kind = "bm25"): bm25s scores over product text, the same row
numbering and manifest/version contract as faiss indexes, the stand-in encoder agreeing with
`search_texts`, and one-line refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from service.config import Settings
from service.retrieval.catalog import Catalog, save_catalog
from service.retrieval.index import IndexLoadError, IndexMismatchError
from service.retrieval.lexical import (
    MAX_QUERY_TERMS,
    LexicalIndex,
    LexicalQueryEncoder,
    build_lexical_index,
    load_lexical_index,
)
from service.retrieval.registry import RetrieverRegistry, RetrieverSpec, index_dir_for


@pytest.fixture
def bm25(tiny_catalog: Catalog, tmp_path: Path) -> LexicalIndex:
    return build_lexical_index(tiny_catalog, tmp_path / "bm25")


def test_ranks_by_shared_terms_and_omits_products_without_any(bm25: LexicalIndex) -> None:
    scores, rows = bm25.search_texts(["waterproof hiking boots", "espresso", "zebra"], 5)
    assert rows.shape == (3, 5) and scores.dtype == np.float32 and rows.dtype == np.int64
    assert bm25.ids[rows[0, 0]] == "p1"  # boots + hiking + waterproof
    assert bm25.ids[rows[1, 0]] == "p6" and (rows[1, 1:] == -1).all()
    assert (rows[2] == -1).all() and (scores[2] == 0).all()
    ranked = scores[0][rows[0] >= 0]
    assert (np.diff(ranked) <= 0).all()


def test_stemming_and_stopwords(bm25: LexicalIndex) -> None:
    _, rows = bm25.search_texts(["the boot"], 3)  # "boot" matches "boots"; "the" is ignored
    assert bm25.ids[rows[0, 0]] == "p1" and (rows[0, 1:] == -1).all()


def test_stand_in_encoder_matches_search_texts(bm25: LexicalIndex) -> None:
    encoder = LexicalQueryEncoder(bm25)
    texts = ["hiking boots for the trail", "ergonomic chair", "", "coffee maker grinder"]
    vectors = encoder.encode(texts)
    assert vectors.shape == (4, MAX_QUERY_TERMS) and vectors.dtype == np.float32
    assert (vectors[2] == -1).all()
    for k in (1, 3, 8, 50):
        a, b = bm25.search(vectors, k), bm25.search_texts(texts, k)
        np.testing.assert_array_equal(a[1], b[1])
        np.testing.assert_array_equal(a[0], b[0])


def test_ties_are_ordered_by_row(tiny_catalog: Catalog, tmp_path: Path) -> None:
    from dataclasses import replace

    from service.retrieval.catalog import Product

    twins = [Product(f"t{i}", "red mug", "") for i in range(6)]
    index = build_lexical_index(replace(tiny_catalog, products=twins), tmp_path / "t")
    _, rows = index.search_texts(["red mug"], 4)
    assert rows[0].tolist() == [0, 1, 2, 3]


def test_manifest_round_trip_and_refusals(
    bm25: LexicalIndex, tiny_catalog: Catalog, tmp_path: Path
) -> None:
    manifest = bm25.manifest
    assert (manifest.backend, manifest.index_type, manifest.format) == ("bm25", "bm25", 2)
    assert manifest.details["k1"] == 1.5 and manifest.details["stemmer"] == "english"
    assert bm25.path is not None
    loaded = load_lexical_index(bm25.path, expected_catalog_hash=tiny_catalog.fingerprint())
    assert loaded.manifest == manifest and loaded.ids == bm25.ids
    with pytest.raises(IndexMismatchError, match="over catalog"):
        load_lexical_index(bm25.path, expected_catalog_hash="0" * 64)
    path = bm25.path / "manifest.json"
    raw = json.loads(path.read_text())
    path.write_text(json.dumps({**raw, "details": {**raw["details"], "k1": 0.9}}))
    with pytest.raises(IndexLoadError, match="version hash does not match|parameters changed"):
        load_lexical_index(bm25.path)
    path.write_text(json.dumps(raw))
    (bm25.path / "ids.json").write_text(json.dumps(bm25.ids[:-1]))
    with pytest.raises(IndexLoadError, match="holds 8 documents, its id map 7"):
        load_lexical_index(bm25.path)


def test_registry_builds_once_and_serves_search(tiny_catalog: Catalog, tmp_path: Path) -> None:
    bundle = str(save_catalog(tiny_catalog, tmp_path / "catalogs" / "small"))
    data_dir = tmp_path / "data"
    spec = RetrieverSpec(name="lexical", kind="bm25", catalog=bundle)
    retriever = RetrieverRegistry.load([spec], data_dir).get("lexical")
    assert retriever.lexical and retriever.backend == "bm25" and retriever.encoder.name == "bm25"
    assert retriever.search(["office chair lumbar"], 3)[0][0][0] == "p7"
    # Same answer through the dense-shaped path (stand-in encoder, then search_vectors).
    via_vectors = retriever.search_vectors(retriever.encode(["office chair lumbar"]), 3)
    assert via_vectors == retriever.search(["office chair lumbar"], 3)
    path = index_dir_for(data_dir, retriever.catalog, "bm25", "bm25", "bm25")
    stamp = (path / "manifest.json").stat().st_mtime_ns
    again = RetrieverRegistry.load([spec], data_dir).get("lexical")
    assert (path / "manifest.json").stat().st_mtime_ns == stamp
    assert again.version == retriever.version


def test_a_corrupt_cached_bm25_index_is_rebuilt(
    tiny_catalog: Catalog, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bundle = str(save_catalog(tiny_catalog, tmp_path / "catalogs" / "small"))
    data_dir = tmp_path / "data"
    spec = RetrieverSpec(name="lexical", kind="bm25", catalog=bundle)
    first = RetrieverRegistry.load([spec], data_dir).get("lexical")
    path = index_dir_for(data_dir, first.catalog, "bm25", "bm25", "bm25")
    (path / "ids.json").write_text("[", encoding="utf-8")
    with caplog.at_level("WARNING", logger="service.retrieval.parts"):
        again = RetrieverRegistry.load([spec], data_dir).get("lexical")
    assert any("rebuilding the cached index" in r.getMessage() for r in caplog.records)
    assert again.search(["office chair lumbar"], 3) == first.search(["office chair lumbar"], 3)
    assert load_lexical_index(path).size == 8


def test_specs_from_a_config_file(tmp_path: Path) -> None:
    config = tmp_path / "ospo.toml"
    config.write_text(
        '[[retrievers]]\nname = "lexical"\nkind = "bm25"\n\n'
        '[[retrievers]]\nname = "fast"\nbackend = "onnx-int8"\nindex_type = "hnsw"\n\n'
        '[[retrievers]]\nname = "gpu"\nbackend = "remote"\nremote_url = "http://tei:8080"\n'
        "remote_batch_size = 64\nremote_timeout_s = 5\nremote_retries = 1\n"
    )
    specs = Settings(config_file=config).retriever_specs()
    assert [(s.name, s.kind, s.backend) for s in specs] == [
        ("lexical", "bm25", "torch"),
        ("fast", "dense", "onnx-int8"),
        ("gpu", "dense", "remote"),
    ]
    assert (specs[2].remote_batch_size, specs[2].remote_timeout_s, specs[2].remote_retries) == (
        64,
        5.0,
        1,
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "sparse"}, "kind 'sparse'"),
        ({"backend": "tensorrt"}, "backend 'tensorrt'"),
        ({"kind": "bm25", "backend": "onnx"}, "not kind bm25"),
        ({"kind": "bm25", "index_type": "hnsw"}, "not kind bm25"),
        ({"backend": "remote"}, "needs remote_url"),
        ({"remote_url": "http://x"}, "backend is torch"),
        ({"backend": "remote", "remote_url": "http://x", "remote_batch_size": 0}, ">= 1"),
        ({"remote_batch_size": "many"}, "must be int"),
    ],
)
def test_bad_specs_refuse_with_one_line(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        RetrieverSpec.from_mapping({"name": "r", **fields})
    assert "\n" not in str(info.value)


def test_attribute_request_path_uses_bm25(demo_catalog: Catalog, tmp_path: Path) -> None:
    """/attribute's engine on a BM25 retriever: same targets, NDCG, cache and explain."""
    import asyncio

    from service.attribution import ndcg_at_k
    from service.cache import MemoryScoreCache
    from service.engine import AttributionEngine, EncodeBatcher
    from service.schemas import AttributeRequest

    bundle = str(save_catalog(demo_catalog, tmp_path / "catalogs" / "demo"))
    registry = RetrieverRegistry.load(
        [RetrieverSpec(name="default", kind="bm25", catalog=bundle)], tmp_path / "data"
    )
    retriever = registry.get("default")
    query_id = next(iter(demo_catalog.queries))
    answer = "cotton cardigan for women, cozy, for cold evenings"
    request = AttributeRequest.model_validate(
        {
            "groups": [
                {
                    "target": {"query_id": query_id},
                    "responses": [
                        {"text": f"<answer>{answer}</answer>"},
                        {"text": "<answer>please something nice</answer>"},
                    ],
                }
            ],
            "options": {"k": 100, "explain": True},
        }
    )
    cache = MemoryScoreCache(10_000)

    async def run() -> tuple[object, object]:
        engine = AttributionEngine(registry, cache, batcher=EncodeBatcher(0.0))
        first = await engine.attribute(request.model_copy(deep=True))
        second = await engine.attribute(request.model_copy(deep=True))
        return first, second

    first, second = asyncio.run(run())
    hits = retriever.search([answer], 100)[0]
    expected = ndcg_at_k([pid for pid, _ in hits], demo_catalog.labels[query_id], 100)
    responses = first.groups[0].responses  # type: ignore[attr-defined]
    assert responses[0].reward == pytest.approx(expected, abs=1e-9)
    assert first.model.encoder == "bm25"  # type: ignore[attr-defined]
    again = second.groups[0].responses  # type: ignore[attr-defined]
    assert [r.reward for r in again] == [r.reward for r in responses]
    assert cache.stats()["hits"] > 0
