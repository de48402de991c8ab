"""Loaders turning public e-commerce datasets, in their native download formats, into a Catalog.

- Amazon ESCI (Shopping Queries): ``shopping_queries_dataset_examples.parquet`` and
  ``shopping_queries_dataset_products.parquet``; E/S/C/I gains 1.0/0.1/0.01/0 as in the ESCI paper.
- Wayfair WANDS: ``product.csv``, ``query.csv``, ``label.csv`` (tab-separated in the release;
  commas accepted too); Exact/Partial/Irrelevant gains 1.0/0.5/0.
- H&M: ``articles.csv``; the dataset has no queries, so queries and labels come from optional
  files (queries: ``.jsonl`` with ``{"id", "text"}`` or ``id<TAB>text``; labels: the bundle's
  ``query_id<TAB>product_id<TAB>gain``).

Only labels with gain > 0 are kept.
"""

from __future__ import annotations

import csv
import json
import logging
import re
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from service.retrieval.catalog import Catalog, CatalogError, Product, read_labels_tsv

logger = logging.getLogger(__name__)

ESCI_GAINS: Mapping[str, float] = {"E": 1.0, "S": 0.1, "C": 0.01, "I": 0.0}
WANDS_GAINS: Mapping[str, float] = {"exact": 1.0, "partial": 0.5, "irrelevant": 0.0}

ESCI_EXAMPLES_FILE = "shopping_queries_dataset_examples.parquet"
ESCI_PRODUCTS_FILE = "shopping_queries_dataset_products.parquet"
_ESCI_EXAMPLE_COLUMNS = ["query_id", "query", "product_id", "product_locale", "esci_label", "split"]
_ESCI_PRODUCT_COLUMNS = [
    "product_id",
    "product_title",
    "product_description",
    "product_bullet_point",
    "product_brand",
    "product_color",
    "product_locale",
]

_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")


def _clean(value: Any) -> str:
    """Text without HTML tags and runs of whitespace; None -> ""."""
    if value is None:
        return ""
    return _SPACE.sub(" ", _TAG.sub(" ", str(value))).strip()


def _join(parts: list[str], sep: str = ". ") -> str:
    return sep.join(part for part in parts if part)


def load_esci(
    directory: Path | str,
    locale: str | None = "us",
    version: str | None = None,
    judged_products_only: bool = False,
    name: str = "esci",
) -> Catalog:
    """ESCI from its two parquet files. `version` "small"/"large" keeps only that version's
    examples (None: all); `judged_products_only` drops products no query judged."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    root = Path(directory)
    examples_path, products_path = root / ESCI_EXAMPLES_FILE, root / ESCI_PRODUCTS_FILE
    for path in (examples_path, products_path):
        if not path.exists():
            raise CatalogError(f"ESCI file {path} does not exist")
    if version not in (None, "small", "large"):
        raise CatalogError(f"ESCI version must be 'small', 'large' or None, not {version!r}")

    columns = _ESCI_EXAMPLE_COLUMNS + ([f"{version}_version"] if version else [])
    examples = _read_parquet(pq, examples_path, columns)
    if locale is not None:
        examples = examples.filter(pc.equal(examples["product_locale"], locale))
    if version is not None:
        examples = examples.filter(pc.equal(examples[f"{version}_version"], 1))

    queries: dict[str, str] = {}
    split: dict[str, str] = {}
    labels: dict[str, dict[str, float]] = {}
    rows = zip(
        examples["query_id"].to_pylist(),
        examples["query"].to_pylist(),
        examples["product_id"].to_pylist(),
        examples["esci_label"].to_pylist(),
        examples["split"].to_pylist(),
        strict=True,
    )
    for query_id_raw, query, product_id, label, split_name in rows:
        query_id = str(query_id_raw)
        queries.setdefault(query_id, str(query))
        if split_name:
            split.setdefault(query_id, str(split_name))
        gain = ESCI_GAINS.get(str(label).strip().upper()[:1])
        if gain is None:
            raise CatalogError(
                f"{examples_path}: unknown esci_label {label!r} (expected E, S, C or I)"
            )
        if gain > 0:
            labels.setdefault(query_id, {})[str(product_id)] = gain

    table = _read_parquet(pq, products_path, _ESCI_PRODUCT_COLUMNS)
    if locale is not None:
        table = table.filter(pc.equal(table["product_locale"], locale))
    judged = {pid for gains in labels.values() for pid in gains} if judged_products_only else None
    products: list[Product] = []
    seen: set[str] = set()
    product_rows = zip(
        *(table[column].to_pylist() for column in _ESCI_PRODUCT_COLUMNS[:6]), strict=True
    )
    for product_id_raw, title, description, bullets, brand, color in product_rows:
        product_id = str(product_id_raw)
        if product_id in seen or (judged is not None and product_id not in judged):
            continue
        seen.add(product_id)
        attributes = _join(
            [f"Brand: {_clean(brand)}" if brand else "", f"Color: {_clean(color)}" if color else ""]
        )
        text = _join([attributes, _clean(bullets), _clean(description)])
        products.append(Product(id=product_id, title=_clean(title), text=text))
    logger.info(
        "ESCI %s: %d products, %d queries, %d judged queries",
        locale,
        len(products),
        len(queries),
        len(labels),
    )
    return Catalog(name=name, products=products, queries=queries, labels=labels, split=split)


def _read_parquet(pq: Any, path: Path, columns: list[str]) -> Any:
    try:
        return pq.read_table(path, columns=columns)
    except Exception as exc:  # pyarrow raises several types for missing columns / bad files
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CatalogError(f"{path}: cannot read columns {columns} ({first_line})") from None


def _sniff_delimiter(path: Path) -> str:
    with open(path, encoding="utf-8", newline="") as fh:
        header = fh.readline()
    return "\t" if "\t" in header else ","


def _read_table(path: Path, required: list[str]) -> Iterator[dict[str, str]]:
    """Rows of a tab- or comma-separated file with a header naming at least `required`."""
    if not path.exists():
        raise CatalogError(f"file {path} does not exist")
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    delimiter = _sniff_delimiter(path)
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh, delimiter=delimiter)
        header = [column.strip() for column in (reader.fieldnames or [])]
        missing = [column for column in required if column not in header]
        if missing:
            raise CatalogError(f"{path}: missing column(s) {', '.join(missing)} (header: {header})")
        reader.fieldnames = header
        for row in reader:
            yield {key: (value or "").strip() for key, value in row.items() if key is not None}


def _wands_features(raw: str) -> str:
    """'color:blue|material:oak' -> 'color: blue; material: oak'."""
    pairs = []
    for item in raw.split("|"):
        key, _, value = item.partition(":")
        key, value = key.strip(), value.strip()
        if key and value:
            pairs.append(f"{key}: {value}")
        elif key:
            pairs.append(key)
    return "; ".join(pairs)


def load_wands(directory: Path | str, name: str = "wands") -> Catalog:
    """WANDS from product.csv, query.csv and label.csv in `directory`."""
    root = Path(directory)
    products: list[Product] = []
    seen: set[str] = set()
    for row in _read_table(root / "product.csv", ["product_id", "product_name"]):
        product_id = row["product_id"]
        if not product_id or product_id in seen:
            continue
        seen.add(product_id)
        text = _join(
            [
                row.get("product_class", ""),
                row.get("category hierarchy", "").replace(" / ", " > "),
                _clean(row.get("product_description", "")),
                _wands_features(row.get("product_features", "")),
            ]
        )
        products.append(Product(id=product_id, title=row["product_name"], text=text))

    queries = {
        row["query_id"]: row["query"]
        for row in _read_table(root / "query.csv", ["query_id", "query"])
        if row["query_id"]
    }

    labels: dict[str, dict[str, float]] = {}
    label_path = root / "label.csv"
    for row in _read_table(label_path, ["query_id", "product_id", "label"]):
        gain = WANDS_GAINS.get(row["label"].lower())
        if gain is None:
            raise CatalogError(
                f"{label_path}: unknown label {row['label']!r} (expected Exact, Partial or Irrelevant)"
            )
        if gain > 0:
            labels.setdefault(row["query_id"], {})[row["product_id"]] = gain
    logger.info(
        "WANDS: %d products, %d queries, %d judged queries",
        len(products),
        len(queries),
        len(labels),
    )
    return Catalog(name=name, products=products, queries=queries, labels=labels)


_HM_TEXT_COLUMNS = [
    "product_type_name",
    "product_group_name",
    "colour_group_name",
    "graphical_appearance_name",
    "index_group_name",
    "section_name",
    "garment_group_name",
]


def load_hm(
    path: Path | str,
    queries: Path | str | None = None,
    labels: Path | str | None = None,
    name: str = "hm",
) -> Catalog:
    """H&M articles (`path` is articles.csv or its directory), with optional queries and labels."""
    articles = Path(path)
    if articles.is_dir():
        articles = articles / "articles.csv"
    products: list[Product] = []
    seen: set[str] = set()
    for row in _read_table(articles, ["article_id", "prod_name"]):
        article_id = row["article_id"]
        if not article_id or article_id in seen:
            continue
        seen.add(article_id)
        attributes = [row[column] for column in _HM_TEXT_COLUMNS if row.get(column)]
        text = _join([", ".join(attributes), _clean(row.get("detail_desc", ""))])
        products.append(Product(id=article_id, title=row["prod_name"], text=text))

    query_texts: dict[str, str] = {}
    split: dict[str, str] = {}
    if queries is not None:
        query_texts, split = _read_queries_file(Path(queries))
    label_map = read_labels_tsv(_existing(Path(labels))) if labels is not None else {}
    logger.info("H&M: %d products, %d queries", len(products), len(query_texts))
    return Catalog(name=name, products=products, queries=query_texts, labels=label_map, split=split)


def _existing(path: Path) -> Path:
    if not path.exists():
        raise CatalogError(f"file {path} does not exist")
    return path


def _read_queries_file(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Queries as JSON lines ({"id", "text", optional "split"}) or id<TAB>text lines."""
    queries: dict[str, str] = {}
    split: dict[str, str] = {}
    with open(_existing(path), encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            if line.lstrip().startswith("{"):
                try:
                    row = json.loads(line)
                    queries[str(row["id"])] = str(row["text"])
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise CatalogError(
                        f"{path}:{line_no}: expected a JSON object with id and text"
                    ) from None
                if row.get("split"):
                    split[str(row["id"])] = str(row["split"])
                continue
            query_id, sep, text = line.partition("\t")
            if not sep:
                raise CatalogError(f"{path}:{line_no}: expected id<TAB>text or a JSON object")
            if line_no == 1 and query_id in ("id", "query_id"):
                continue
            queries[query_id] = text
    return queries, split
