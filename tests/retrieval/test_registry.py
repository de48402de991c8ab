"""The retriever registry: several retrievers at once, indexes built once and cached on disk,
clear errors for unknown retrievers and mismatched prebuilt indexes; `ospo index build`."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from service.retrieval.build import build_index_cli, demo_catalog_dir, load_catalog_source
from service.retrieval.catalog import Catalog, CatalogError, load_catalog, save_catalog
from service.retrieval.encoder import HashEncoder
from service.retrieval.index import IndexMismatchError, build_index, load_index
from service.retrieval.registry import (
    RetrieverRegistry,
    RetrieverSpec,
    UnknownRetrieverError,
    index_dir_for,
)


@pytest.fixture
def bundle(tiny_catalog: Catalog, tmp_path: Path) -> str:
    return str(save_catalog(tiny_catalog, tmp_path / "catalogs" / "small"))


def test_two_retrievers_with_different_encoders(bundle: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    specs = [
        RetrieverSpec(name="default", encoder="hash:32", catalog=bundle),
        RetrieverSpec(name="wide", encoder="hash:64", catalog=bundle, index_type="hnsw"),
    ]
    registry = RetrieverRegistry.load(specs, data_dir)
    assert registry.names() == ["default", "wide"] and len(registry) == 2 and "wide" in registry
    default, wide = registry.get("default"), registry.get("wide")
    assert (default.encoder.dim, wide.encoder.dim) == (32, 64)
    assert default.catalog is wide.catalog  # one catalog object for one source
    assert default.version != wide.version
    assert default.info() == {
        "name": "default",
        "encoder": "hash:32",
        "dim": 32,
        "index": "flat",
        "size": 8,
        "version": default.version,
        "catalog": "small",
        "backend": "torch",
    }
    for retriever in registry:
        hits = retriever.search(["office chair with lumbar support"], k=3)[0]
        assert hits[0][0] == "p7" and len(hits) == 3
        assert all(isinstance(score, float) for _, score in hits)
    built = sorted(p.name for p in (data_dir / "indexes").iterdir())
    assert built == sorted(
        index_dir_for(data_dir, default.catalog, name, kind).name
        for name, kind in (("hash:32", "flat"), ("hash:64", "hnsw"))
    )
    assert all(name.startswith("small-") for name in built)


def test_unknown_retriever(bundle: str, tmp_path: Path) -> None:
    registry = RetrieverRegistry.load(
        [RetrieverSpec(name="a", encoder="hash:32", catalog=bundle)], tmp_path / "d"
    )
    with pytest.raises(UnknownRetrieverError) as info:
        registry.get("mpnet")
    assert isinstance(info.value, LookupError)
    assert (info.value.name, info.value.available) == ("mpnet", ["a"])
    assert str(info.value) == "unknown retriever 'mpnet'; available: a"


def test_indexes_are_built_once_and_reused(bundle: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    spec = RetrieverSpec(encoder="hash:32", catalog=bundle)
    first = RetrieverRegistry.load([spec], data_dir).get("default")
    assert first.index.path is not None
    index_file = first.index.path / "index.faiss"
    stamp = index_file.stat().st_mtime_ns
    second = RetrieverRegistry.load(
        [spec, RetrieverSpec(name="twin", encoder="hash:32", catalog=bundle)], data_dir
    )
    assert index_file.stat().st_mtime_ns == stamp
    assert second.get("default").index is second.get("twin").index
    assert second.get("default").version == first.version


def test_a_corrupt_cached_index_is_rebuilt(bundle: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    spec = RetrieverSpec(encoder="hash:32", catalog=bundle)
    path = RetrieverRegistry.load([spec], data_dir).get("default").index.path
    assert path is not None
    (path / "index.faiss").write_bytes(b"garbage")
    retriever = RetrieverRegistry.load([spec], data_dir).get("default")
    assert retriever.search(["tent"], 1)[0][0][0] == "p8"
    assert load_index(path).size == 8


def test_concurrent_starts_share_one_index(bundle: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    spec = RetrieverSpec(encoder="hash:32", catalog=bundle, index_type="ivf")
    versions: list[str] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            versions.append(RetrieverRegistry.load([spec], data_dir).get("default").version)
        except BaseException as exc:  # collected and asserted in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(set(versions)) == 1 and len(versions) == 4
    assert len(list((data_dir / "indexes").iterdir())) == 1  # no leftover temporary directories


def test_prebuilt_index_dir_is_checked(bundle: str, tiny_catalog: Catalog, tmp_path: Path) -> None:
    build_index(tiny_catalog, HashEncoder(32), "flat", tmp_path / "prebuilt", progress=False)
    ok = RetrieverRegistry.load(
        [RetrieverSpec(encoder="hash:32", catalog=bundle, index_dir=str(tmp_path / "prebuilt"))],
        tmp_path / "d",
    )
    assert ok.get("default").index.path == tmp_path / "prebuilt"
    with pytest.raises(
        IndexMismatchError,
        match="built with encoder hash:32, but the retriever is configured with hash:64",
    ):
        RetrieverRegistry.load(
            [
                RetrieverSpec(
                    encoder="hash:64", catalog=bundle, index_dir=str(tmp_path / "prebuilt")
                )
            ],
            tmp_path / "d",
        )


def test_demo_catalog_is_written_once(tmp_path: Path, demo_catalog: Catalog) -> None:
    registry = RetrieverRegistry.load([RetrieverSpec(encoder="hash:32")], tmp_path)
    retriever = registry.get("default")
    assert retriever.catalog.fingerprint() == demo_catalog.fingerprint()
    saved = demo_catalog_dir(tmp_path)
    assert load_catalog(saved).labels == demo_catalog.labels
    stamp = (saved / "products.jsonl").stat().st_mtime_ns
    load_catalog_source("demo", tmp_path)
    assert (saved / "products.jsonl").stat().st_mtime_ns == stamp


def test_bad_specs(bundle: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="configured twice: a"):
        RetrieverRegistry.load(
            [RetrieverSpec(name="a", encoder="hash:32", catalog=bundle)] * 2, tmp_path
        )
    with pytest.raises(ValueError, match="index type 'annoy'"):
        RetrieverRegistry.load(
            [RetrieverSpec(encoder="hash:32", catalog=bundle, index_type="annoy")], tmp_path
        )
    with pytest.raises(CatalogError, match="neither 'demo' nor an existing catalog directory"):
        RetrieverRegistry.load(
            [RetrieverSpec(encoder="hash:32", catalog=str(tmp_path / "none"))], tmp_path
        )


def test_spec_from_mapping() -> None:
    spec = RetrieverSpec.from_mapping(
        {"name": "mpnet", "encoder": "all-mpnet-base-v2", "index": "hnsw", "index_dir": None}
    )
    assert spec == RetrieverSpec(name="mpnet", encoder="all-mpnet-base-v2", index_type="hnsw")
    with pytest.raises(ValueError, match="unknown field"):
        RetrieverSpec.from_mapping({"name": "x", "model": "y"})


def test_build_index_cli(tmp_path: Path, bundle: str) -> None:
    manifest = build_index_cli(bundle, "hash:32", "hnsw", tmp_path / "out", tmp_path / "data")
    assert (manifest.catalog, manifest.index_type, manifest.size, manifest.encoder) == (
        "small",
        "hnsw",
        8,
        "hash:32",
    )
    assert load_index(tmp_path / "out", expected_encoder="hash:32").manifest == manifest
    demo = build_index_cli(None, "hash:16", "flat", tmp_path / "demo-out", tmp_path / "data")
    assert demo.catalog == "demo" and demo.size >= 2000
