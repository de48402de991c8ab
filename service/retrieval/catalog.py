"""The catalog bundle: products, shopping queries and graded relevance labels, on disk and in memory.

A bundle directory holds

- ``products.jsonl``: one ``{"id", "title", "text"}`` object per line;
- ``queries.jsonl``: one ``{"id", "text"}`` object per line, optionally with ``"split"``
  (``train``/``test``) and ``"attributes"`` (the target attribute combination of a demo query);
- ``labels.tsv``: ``query_id<TAB>product_id<TAB>gain`` with gain > 0;
- ``catalog.json``: ``{"name", "fingerprint"}``.

The fingerprint covers the products only: it is what an index depends on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.errors import ResourceError

logger = logging.getLogger(__name__)

PRODUCTS_FILE = "products.jsonl"
QUERIES_FILE = "queries.jsonl"
LABELS_FILE = "labels.tsv"
META_FILE = "catalog.json"
# Ids are written into labels.tsv lines, so they must not contain its separators.
_BAD_ID_CHARS = frozenset("\t\r\n")


class CatalogError(ResourceError, ValueError):
    """A catalog bundle or native dataset file is missing or malformed (one-line message)."""


@dataclass(frozen=True)
class Product:
    id: str
    title: str
    text: str

    def passage(self) -> str:
        """The text an encoder embeds for this product: title, then the descriptive text."""
        if not self.text:
            return self.title
        if not self.title:
            return self.text
        return f"{self.title}. {self.text}"


@dataclass
class Catalog:
    name: str
    products: list[Product]
    queries: dict[str, str]
    labels: dict[str, dict[str, float]]
    split: dict[str, str] = field(default_factory=dict)
    """query id -> "train" | "test" (empty when the source has no split)."""
    query_attributes: dict[str, dict[str, str]] = field(default_factory=dict)
    """query id -> target attribute combination (demo catalog; empty elsewhere)."""
    _by_id: dict[str, Product] | None = field(default=None, init=False, repr=False, compare=False)

    def fingerprint(self) -> str:
        return catalog_fingerprint(self.products)

    def product(self, product_id: str) -> Product | None:
        """The product with this id, or None (built lazily; the catalog is read-only after that)."""
        if self._by_id is None:
            self._by_id = {p.id: p for p in self.products}
        return self._by_id.get(product_id)

    def query_ids(self, split: str | None = None) -> list[str]:
        """Query ids in catalog order, restricted to one split when given."""
        if split is None:
            return list(self.queries)
        return [qid for qid in self.queries if self.split.get(qid) == split]


def catalog_fingerprint(products: Iterable[Product]) -> str:
    """sha256 over (id, title, text) of every product, in catalog order."""
    digest = hashlib.sha256()
    for product in products:
        for part in (product.id, product.title, product.text):
            encoded = part.encode("utf-8")
            digest.update(len(encoded).to_bytes(8, "little"))
            digest.update(encoded)
    return digest.hexdigest()


def validate_catalog(catalog: Catalog) -> None:
    """Raise CatalogError for duplicate product ids or non-positive gains."""
    seen: set[str] = set()
    for product in catalog.products:
        if not product.id or _BAD_ID_CHARS.intersection(product.id):
            raise CatalogError(
                f"catalog {catalog.name!r}: product id {product.id!r} is empty or has a tab or newline"
            )
        if product.id in seen:
            raise CatalogError(f"catalog {catalog.name!r}: duplicate product id {product.id!r}")
        seen.add(product.id)
    for query_id in catalog.queries:
        if not query_id or _BAD_ID_CHARS.intersection(query_id):
            raise CatalogError(
                f"catalog {catalog.name!r}: query id {query_id!r} is empty or has a tab or newline"
            )
    for query_id, gains in catalog.labels.items():
        for product_id, gain in gains.items():
            if not gain > 0:
                raise CatalogError(
                    f"catalog {catalog.name!r}: label ({query_id}, {product_id}) has gain {gain}, must be > 0"
                )


def save_catalog(catalog: Catalog, out_dir: Path | str) -> Path:
    """Write the bundle atomically: into a temporary sibling directory, then renamed over out_dir."""
    validate_catalog(catalog)
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        _write_bundle(catalog, tmp)
        replace_dir(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _write_bundle(catalog: Catalog, out: Path) -> None:
    with open(out / PRODUCTS_FILE, "w", encoding="utf-8") as fh:
        for product in catalog.products:
            row = {"id": product.id, "title": product.title, "text": product.text}
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    with open(out / QUERIES_FILE, "w", encoding="utf-8") as fh:
        for query_id, text in catalog.queries.items():
            query_row: dict[str, Any] = {"id": query_id, "text": text}
            if query_id in catalog.split:
                query_row["split"] = catalog.split[query_id]
            if query_id in catalog.query_attributes:
                query_row["attributes"] = catalog.query_attributes[query_id]
            fh.write(json.dumps(query_row, ensure_ascii=False) + "\n")
    with open(out / LABELS_FILE, "w", encoding="utf-8") as fh:
        for query_id, gains in catalog.labels.items():
            for product_id, gain in gains.items():
                fh.write(f"{query_id}\t{product_id}\t{gain!r}\n")
    meta = {"name": catalog.name, "fingerprint": catalog.fingerprint()}
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def replace_dir(src: Path, dst: Path) -> None:
    """Move directory src to dst, replacing an existing dst with as small a window as possible."""
    if dst.exists():
        trash = Path(tempfile.mkdtemp(prefix=f".{dst.name}.old-", dir=dst.parent))
        os.rename(dst, trash / dst.name)
        os.rename(src, dst)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.rename(src, dst)


def load_catalog(path: Path | str) -> Catalog:
    """Read a bundle directory; CatalogError names the file and line of any problem."""
    root = Path(path)
    if not root.is_dir():
        raise CatalogError(f"catalog directory {root} does not exist")
    meta_path = root / META_FILE
    meta = _read_json_object(meta_path) if meta_path.exists() else {}
    name = str(meta.get("name") or root.name)

    products: list[Product] = []
    for line_no, row in _read_jsonl(root / PRODUCTS_FILE):
        try:
            products.append(
                Product(id=str(row["id"]), title=str(row["title"]), text=str(row.get("text", "")))
            )
        except KeyError as exc:
            raise CatalogError(f"{root / PRODUCTS_FILE}:{line_no}: missing field {exc}") from None

    queries: dict[str, str] = {}
    split: dict[str, str] = {}
    attributes: dict[str, dict[str, str]] = {}
    queries_path = root / QUERIES_FILE
    if queries_path.exists():
        for line_no, row in _read_jsonl(queries_path):
            try:
                query_id = str(row["id"])
                queries[query_id] = str(row["text"])
            except KeyError as exc:
                raise CatalogError(f"{queries_path}:{line_no}: missing field {exc}") from None
            if row.get("split"):
                split[query_id] = str(row["split"])
            if isinstance(row.get("attributes"), dict):
                attributes[query_id] = {str(k): str(v) for k, v in row["attributes"].items()}

    labels_path = root / LABELS_FILE
    labels = read_labels_tsv(labels_path) if labels_path.exists() else {}

    catalog = Catalog(
        name=name,
        products=products,
        queries=queries,
        labels=labels,
        split=split,
        query_attributes=attributes,
    )
    validate_catalog(catalog)
    expected = meta.get("fingerprint")
    if expected and expected != catalog.fingerprint():
        raise CatalogError(
            f"{meta_path}: fingerprint does not match {root / PRODUCTS_FILE} (edited or truncated bundle)"
        )
    return catalog


def read_labels_tsv(path: Path) -> dict[str, dict[str, float]]:
    """query_id<TAB>product_id<TAB>gain lines (a header line starting with query_id is skipped)."""
    labels: dict[str, dict[str, float]] = {}
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            line = line.rstrip("\r\n")
            if not line.strip() or (line_no == 1 and line.startswith("query_id")):
                continue
            parts = line.split("\t")
            if len(parts) != 3:
                raise CatalogError(f"{path}:{line_no}: expected query_id<TAB>product_id<TAB>gain")
            try:
                gain = float(parts[2])
            except ValueError:
                raise CatalogError(f"{path}:{line_no}: gain {parts[2]!r} is not a number") from None
            if gain > 0:
                labels.setdefault(parts[0], {})[parts[1]] = gain
    return labels


def _read_json_object(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CatalogError(f"{path}: cannot read JSON ({exc})") from None
    if not isinstance(value, dict):
        raise CatalogError(f"{path}: expected a JSON object")
    return value


def _read_jsonl(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    if not path.exists():
        raise CatalogError(f"catalog file {path} does not exist")
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CatalogError(f"{path}:{line_no}: invalid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise CatalogError(f"{path}:{line_no}: expected a JSON object")
            yield line_no, row
