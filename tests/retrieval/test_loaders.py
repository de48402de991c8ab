"""Native dataset loaders on small fixture files written in each dataset's exact format."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from service.retrieval.catalog import CatalogError, load_catalog, save_catalog
from service.retrieval.loaders import load_esci, load_hm, load_wands


def _write_esci(root: Path) -> None:
    examples = {
        "example_id": [0, 1, 2, 3, 4, 5, 6],
        "query": [
            "hiking boots",
            "hiking boots",
            "hiking boots",
            "hiking boots",
            "botas",
            "desk lamp",
            "desk lamp",
        ],
        "query_id": [1, 1, 1, 1, 2, 3, 3],
        "product_id": ["B01", "B02", "B03", "B04", "B05", "B06", "B02"],
        "product_locale": ["us", "us", "us", "us", "es", "us", "us"],
        "esci_label": ["E", "S", "C", "I", "E", "E", "I"],
        "small_version": [1, 1, 0, 1, 1, 0, 0],
        "large_version": [1, 1, 1, 1, 1, 1, 1],
        "split": ["train", "train", "train", "train", "test", "test", "test"],
    }
    products = {
        "product_id": ["B01", "B02", "B03", "B04", "B05", "B06", "B99"],
        "product_title": [
            "Trail Boot",
            "Walking Shoe",
            "Boot Laces",
            "Phone Case",
            "Bota",
            "LED Lamp",
            "Unjudged",
        ],
        "product_description": [
            "<p>Waterproof <b>leather</b></p>",
            None,
            "Spare laces",
            None,
            None,
            "Dimmable",
            None,
        ],
        "product_bullet_point": ["Vibram sole\nAnkle support", None, None, None, None, None, None],
        "product_brand": ["Ridge", None, "LaceCo", None, None, "Lumo", None],
        "product_color": ["Brown", "Black", None, None, None, "White", None],
        "product_locale": ["us", "us", "us", "us", "es", "us", "us"],
    }
    pq.write_table(pa.table(examples), root / "shopping_queries_dataset_examples.parquet")
    pq.write_table(pa.table(products), root / "shopping_queries_dataset_products.parquet")


def test_esci_gains_locale_and_text(tmp_path: Path) -> None:
    _write_esci(tmp_path)
    catalog = load_esci(tmp_path)
    assert catalog.queries == {"1": "hiking boots", "3": "desk lamp"}
    assert catalog.labels == {"1": {"B01": 1.0, "B02": 0.1, "B03": 0.01}, "3": {"B06": 1.0}}
    assert catalog.split == {"1": "train", "3": "test"}
    assert [p.id for p in catalog.products] == ["B01", "B02", "B03", "B04", "B06", "B99"]
    boot = catalog.product("B01")
    assert boot is not None and boot.title == "Trail Boot"
    assert boot.text == "Brand: Ridge. Color: Brown. Vibram sole Ankle support. Waterproof leather"


def test_esci_options(tmp_path: Path) -> None:
    _write_esci(tmp_path)
    small = load_esci(tmp_path, version="small", judged_products_only=True)
    assert small.labels == {"1": {"B01": 1.0, "B02": 0.1}}
    assert {p.id for p in small.products} == {"B01", "B02"}
    spanish = load_esci(tmp_path, locale="es")
    assert spanish.labels == {"2": {"B05": 1.0}} and [p.id for p in spanish.products] == ["B05"]
    everything = load_esci(tmp_path, locale=None)
    assert set(everything.queries) == {"1", "2", "3"}


def test_esci_errors(tmp_path: Path) -> None:
    with pytest.raises(
        CatalogError, match="shopping_queries_dataset_examples.parquet does not exist"
    ):
        load_esci(tmp_path)
    _write_esci(tmp_path)
    pq.write_table(
        pa.table({"query_id": [1]}), tmp_path / "shopping_queries_dataset_examples.parquet"
    )
    with pytest.raises(CatalogError, match="cannot read columns"):
        load_esci(tmp_path)


def _write_wands(root: Path, delimiter: str) -> None:
    def write(name: str, header: list[str], rows: list[list[str]]) -> None:
        with open(root / name, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, delimiter=delimiter)
            writer.writerow(header)
            writer.writerows(rows)

    write(
        "product.csv",
        [
            "product_id",
            "product_name",
            "product_class",
            "category hierarchy",
            "product_description",
            "product_features",
            "rating_count",
            "average_rating",
            "review_count",
        ],
        [
            [
                "0",
                "solid wood platform bed",
                "Beds",
                "Furniture / Bedroom Furniture / Beds",
                "a sturdy bed, with a headboard",
                "color:natural|material:oak",
                "15",
                "4.5",
                "15",
            ],
            [
                "1",
                "all-clad 7 qt slow cooker",
                "Slow Cookers",
                "Kitchen / Small Appliances",
                "stainless\tsteel cooker" if delimiter == "," else "stainless steel cooker",
                "capacity:7 qt",
                "100",
                "4.8",
                "60",
            ],
            ["2", "outdoor bar stool", "Bar Stools", "Outdoor / Seating", "", "", "", "", ""],
        ],
    )
    write(
        "query.csv",
        ["query_id", "query", "query_class"],
        [["0", "wood bed", "Beds"], ["1", "slow cooker", "Slow Cookers"]],
    )
    write(
        "label.csv",
        ["id", "query_id", "product_id", "label"],
        [
            ["0", "0", "0", "Exact"],
            ["1", "0", "2", "Irrelevant"],
            ["2", "1", "1", "Exact"],
            ["3", "1", "0", "Partial"],
        ],
    )


@pytest.mark.parametrize("delimiter", ["\t", ","])
def test_wands_tab_and_comma(tmp_path: Path, delimiter: str) -> None:
    _write_wands(tmp_path, delimiter)
    catalog = load_wands(tmp_path)
    assert [p.id for p in catalog.products] == ["0", "1", "2"]
    assert catalog.queries == {"0": "wood bed", "1": "slow cooker"}
    assert catalog.labels == {"0": {"0": 1.0}, "1": {"1": 1.0, "0": 0.5}}
    bed = catalog.product("0")
    assert bed is not None and bed.title == "solid wood platform bed"
    assert (
        bed.text
        == "Beds. Furniture > Bedroom Furniture > Beds. a sturdy bed, with a headboard. color: natural; material: oak"
    )
    stool = catalog.product("2")
    assert stool is not None and stool.text == "Bar Stools. Outdoor > Seating"


def test_wands_errors(tmp_path: Path) -> None:
    _write_wands(tmp_path, "\t")
    (tmp_path / "label.csv").write_text("id\tquery_id\tproduct_id\tlabel\n0\t0\t0\tPerfect\n")
    with pytest.raises(CatalogError, match="unknown label 'Perfect'"):
        load_wands(tmp_path)
    (tmp_path / "query.csv").write_text("query_id\tquery_class\n0\tBeds\n")
    with pytest.raises(CatalogError, match=r"query.csv: missing column\(s\) query"):
        load_wands(tmp_path)


_HM_HEADER = [
    "article_id",
    "product_code",
    "prod_name",
    "product_type_no",
    "product_type_name",
    "product_group_name",
    "graphical_appearance_no",
    "graphical_appearance_name",
    "colour_group_code",
    "colour_group_name",
    "perceived_colour_value_id",
    "perceived_colour_value_name",
    "perceived_colour_master_id",
    "perceived_colour_master_name",
    "department_no",
    "department_name",
    "index_code",
    "index_name",
    "index_group_no",
    "index_group_name",
    "section_no",
    "section_name",
    "garment_group_no",
    "garment_group_name",
    "detail_desc",
]


def _write_hm(root: Path) -> None:
    rows = [
        [
            "0108775015",
            "0108775",
            "Strap top",
            "253",
            "Vest top",
            "Garment Upper body",
            "1010016",
            "Solid",
            "09",
            "Black",
            "4",
            "Dark",
            "5",
            "Black",
            "1676",
            "Jersey Basic",
            "A",
            "Ladieswear",
            "1",
            "Ladieswear",
            "16",
            "Womens Everyday Basics",
            "1002",
            "Jersey Basic",
            "Jersey top with narrow shoulder straps.",
        ],
        [
            "0110065001",
            "0110065",
            "OP T-shirt(Idro)",
            "306",
            "Bra",
            "Underwear",
            "1010016",
            "Solid",
            "09",
            "Black",
            "4",
            "Dark",
            "5",
            "Black",
            "1339",
            "Clean Lingerie",
            "B",
            "Lingeries/Tights",
            "1",
            "Ladieswear",
            "61",
            "Womens Lingerie",
            "1017",
            "Under-, Nightwear",
            "",
        ],
    ]
    with open(root / "articles.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(_HM_HEADER)
        writer.writerows(rows)


def test_hm_without_queries(tmp_path: Path) -> None:
    _write_hm(tmp_path)
    catalog = load_hm(tmp_path)
    assert [p.id for p in catalog.products] == ["0108775015", "0110065001"]
    top = catalog.products[0]
    assert top.title == "Strap top"
    assert top.text == (
        "Vest top, Garment Upper body, Black, Solid, Ladieswear, Womens Everyday Basics, Jersey Basic. "
        "Jersey top with narrow shoulder straps."
    )
    assert catalog.queries == {} and catalog.labels == {}


def test_hm_with_queries_and_labels(tmp_path: Path) -> None:
    _write_hm(tmp_path)
    (tmp_path / "queries.jsonl").write_text(
        json.dumps({"id": "h1", "text": "black strap top", "split": "test"}) + "\n"
    )
    (tmp_path / "labels.tsv").write_text("h1\t0108775015\t1.0\nh1\t0110065001\t0\n")
    catalog = load_hm(
        tmp_path / "articles.csv",
        queries=tmp_path / "queries.jsonl",
        labels=tmp_path / "labels.tsv",
    )
    assert catalog.queries == {"h1": "black strap top"}
    assert catalog.split == {"h1": "test"}
    assert catalog.labels == {"h1": {"0108775015": 1.0}}
    (tmp_path / "queries.tsv").write_text("query_id\ttext\nh2\tlingerie in black\n")
    assert load_hm(tmp_path, queries=tmp_path / "queries.tsv").queries == {
        "h2": "lingerie in black"
    }
    with pytest.raises(CatalogError, match="does not exist"):
        load_hm(tmp_path, labels=tmp_path / "missing.tsv")


def test_loaded_catalog_survives_a_bundle_round_trip(tmp_path: Path) -> None:
    _write_wands(tmp_path, "\t")
    catalog = load_wands(tmp_path)
    loaded = load_catalog(save_catalog(catalog, tmp_path / "bundle"))
    assert loaded.fingerprint() == catalog.fingerprint()
    assert loaded.labels == catalog.labels
