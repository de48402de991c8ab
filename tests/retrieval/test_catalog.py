"""Catalog bundles: save/load round trips, the fingerprint, and clear errors for bad bundles."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.retrieval.catalog import (
    Catalog,
    CatalogError,
    Product,
    catalog_fingerprint,
    load_catalog,
    save_catalog,
)


def test_round_trip_keeps_everything(tiny_catalog: Catalog, tmp_path: Path) -> None:
    tiny_catalog.query_attributes["q1"] = {"category": "hiking-boots", "gender": "women's"}
    out = save_catalog(tiny_catalog, tmp_path / "bundle")
    assert sorted(p.name for p in out.iterdir()) == [
        "catalog.json",
        "labels.tsv",
        "products.jsonl",
        "queries.jsonl",
    ]
    loaded = load_catalog(out)
    assert loaded.name == "small"
    assert loaded.products == tiny_catalog.products
    assert loaded.queries == tiny_catalog.queries
    assert loaded.labels == tiny_catalog.labels
    assert loaded.split == tiny_catalog.split
    assert loaded.query_attributes == {"q1": {"category": "hiking-boots", "gender": "women's"}}
    assert (
        json.loads((out / "catalog.json").read_text())["fingerprint"] == tiny_catalog.fingerprint()
    )
    assert (out / "labels.tsv").read_text().splitlines()[0] == "q1\tp1\t1.0"


def test_save_replaces_an_existing_bundle(tiny_catalog: Catalog, tmp_path: Path) -> None:
    save_catalog(tiny_catalog, tmp_path / "bundle")
    smaller = replace(tiny_catalog, products=tiny_catalog.products[:3], labels={})
    save_catalog(smaller, tmp_path / "bundle")
    assert [p.id for p in load_catalog(tmp_path / "bundle").products] == ["p1", "p2", "p3"]
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]  # no temporary leftovers


def test_fingerprint_covers_product_text_only(tiny_catalog: Catalog) -> None:
    base = tiny_catalog.fingerprint()
    assert base == catalog_fingerprint(list(tiny_catalog.products))
    assert replace(tiny_catalog, queries={}).fingerprint() == base
    edited = [replace(tiny_catalog.products[0], text="changed"), *tiny_catalog.products[1:]]
    assert catalog_fingerprint(edited) != base
    # Field boundaries matter: moving a character from title to text changes the hash.
    assert catalog_fingerprint([Product("a", "bc", "d")]) != catalog_fingerprint(
        [Product("a", "b", "cd")]
    )


def test_product_lookup_and_split_filter(tiny_catalog: Catalog) -> None:
    product = tiny_catalog.product("p3")
    assert product is not None and product.title == "Stainless steel water bottle"
    assert tiny_catalog.product("nope") is None
    assert tiny_catalog.query_ids("test") == ["q2"]
    assert tiny_catalog.query_ids() == ["q1", "q2"]
    assert Product("x", "Title", "").passage() == "Title"
    assert Product("x", "Title", "Body").passage() == "Title. Body"


def test_missing_directory_and_files(tmp_path: Path, tiny_catalog: Catalog) -> None:
    with pytest.raises(CatalogError, match="does not exist"):
        load_catalog(tmp_path / "absent")
    out = save_catalog(tiny_catalog, tmp_path / "bundle")
    (out / "products.jsonl").unlink()
    with pytest.raises(CatalogError, match="products.jsonl does not exist"):
        load_catalog(out)


def test_edited_bundle_fails_its_fingerprint(tmp_path: Path, tiny_catalog: Catalog) -> None:
    out = save_catalog(tiny_catalog, tmp_path / "bundle")
    lines = (out / "products.jsonl").read_text().splitlines()
    (out / "products.jsonl").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(CatalogError, match="fingerprint does not match"):
        load_catalog(out)


def test_bad_lines_are_named(tmp_path: Path, tiny_catalog: Catalog) -> None:
    out = save_catalog(tiny_catalog, tmp_path / "bundle")
    (out / "labels.tsv").write_text("q1\tp1\t1.0\nq1\tp2\tlots\n")
    with pytest.raises(CatalogError, match=r"labels.tsv:2: gain 'lots' is not a number"):
        load_catalog(out)
    (out / "labels.tsv").write_text("q1\tp1\n")
    with pytest.raises(CatalogError, match=r"labels.tsv:1: expected"):
        load_catalog(out)
    (out / "labels.tsv").write_text("")
    (out / "queries.jsonl").write_text('{"id": "q1", "text": "ok"}\n{"id": "q2"\n')
    with pytest.raises(CatalogError, match=r"queries.jsonl:2: invalid JSON"):
        load_catalog(out)


def test_labels_with_zero_gain_are_dropped(tmp_path: Path, tiny_catalog: Catalog) -> None:
    out = save_catalog(tiny_catalog, tmp_path / "bundle")
    (out / "labels.tsv").write_text("query_id\tproduct_id\tgain\nq1\tp1\t1.0\nq1\tp2\t0\n")
    assert load_catalog(out).labels == {"q1": {"p1": 1.0}}


def test_invalid_catalogs_are_refused(tmp_path: Path, tiny_catalog: Catalog) -> None:
    duplicate = replace(tiny_catalog, products=[*tiny_catalog.products, tiny_catalog.products[0]])
    with pytest.raises(CatalogError, match="duplicate product id 'p1'"):
        save_catalog(duplicate, tmp_path / "a")
    tabbed = replace(tiny_catalog, products=[Product("p\t1", "t", "x")])
    with pytest.raises(CatalogError, match="tab or newline"):
        save_catalog(tabbed, tmp_path / "b")
    zero_gain = replace(tiny_catalog, labels={"q1": {"p1": 0.0}})
    with pytest.raises(CatalogError, match="must be > 0"):
        save_catalog(zero_gain, tmp_path / "c")


_ids = st.text(
    st.characters(blacklist_characters="\t\r\n", blacklist_categories=["Cs"]),
    min_size=1,
    max_size=12,
)
_texts = st.text(st.characters(blacklist_categories=["Cs"]), max_size=60)


@settings(max_examples=40, deadline=None)
@given(
    rows=st.lists(
        st.tuples(_ids, _texts, _texts), min_size=1, max_size=8, unique_by=lambda row: row[0]
    ),
    query_text=_texts,
    gain=st.floats(min_value=1e-6, max_value=10, allow_nan=False),
)
def test_round_trip_property(
    tmp_path_factory: pytest.TempPathFactory,
    rows: list[tuple[str, str, str]],
    query_text: str,
    gain: float,
) -> None:
    products = [Product(pid, title, text) for pid, title, text in rows]
    catalog = Catalog("prop", products, {"q": query_text}, {"q": {products[0].id: gain}})
    loaded = load_catalog(save_catalog(catalog, tmp_path_factory.mktemp("prop") / "bundle"))
    assert loaded.products == products
    assert loaded.queries == {"q": query_text}
    assert loaded.labels == {"q": {products[0].id: gain}}
    assert loaded.fingerprint() == catalog.fingerprint()
