"""A lexical retriever: BM25 (bm25s) over the catalog's product text (``kind = "bm25"``).

Same contract as the dense indexes: rows number the catalog's products in catalog order
(``ids[row]``), searches return (scores, rows) best first with -1 where nothing more was
found, and the manifest's version (catalog hash + scoring parameters) goes into every cache
key. Products sharing no term with the query are not retrieved (row -1), rather than ranked
in arbitrary order behind the matches: with no term overlap BM25 has no opinion. Equal scores
are ordered by row, so a ranking never depends on partition order.

`search_texts(texts, k)` is the lexical path. For code written against dense retrievers
(encode, then `search(vectors, k)`), `LexicalQueryEncoder` is a documented stand-in "encoder":
it maps each text to the ids of its index terms (float32, -1 padded, at most
MAX_QUERY_TERMS), which `search` scores exactly as `search_texts` does. Only a query with more
than MAX_QUERY_TERMS known terms ranks differently through the stand-in.

An index directory holds ``bm25/`` (bm25s's arrays and vocabulary), ``ids.json`` and
``manifest.json`` (backend and index type "bm25", the scoring and tokenisation parameters).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import threading
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from service.retrieval.backends import BM25
from service.retrieval.catalog import Catalog
from service.retrieval.index import (
    IDS_FILE,
    INDEX_FORMAT,
    MANIFEST_FILE,
    IndexBuildError,
    IndexLoadError,
    IndexManifest,
    check_manifest,
    index_version,
    read_manifest,
)

logger = logging.getLogger(__name__)

BM25_DIR = "bm25"
MAX_QUERY_TERMS = 512
LEXICAL_ENCODER = "bm25"
"""The stand-in encoder's name: what manifests and cache keys record for a lexical index."""
DEFAULT_PARAMS: dict[str, Any] = {
    "k1": 1.5,
    "b": 0.75,
    "method": "lucene",
    "lower": True,
    "token_pattern": r"(?u)\b\w\w+\b",
    "stopwords": "en",
    "stemmer": "english",
}


def _stemmer(name: str) -> Callable[[list[str]], list[str]] | None:
    if name == "none":
        return None
    try:
        import Stemmer
    except ImportError:
        raise IndexLoadError(
            f"the BM25 index stems with the {name!r} Snowball stemmer, but PyStemmer is not installed"
        ) from None
    stemmer: Callable[[list[str]], list[str]] = Stemmer.Stemmer(name).stemWords
    return stemmer


def default_params() -> dict[str, Any]:
    """DEFAULT_PARAMS, without stemming where PyStemmer is missing (recorded in the manifest,
    so such an index is never read with a stemmer or the other way round)."""
    params = dict(DEFAULT_PARAMS)
    try:
        import Stemmer  # noqa: F401
    except ImportError:
        params["stemmer"] = "none"
    return params


def params_checksum(params: dict[str, Any]) -> str:
    text = json.dumps(params, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class _Tokenizer:
    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params
        self._stem = _stemmer(str(params["stemmer"]))

    def __call__(self, texts: Sequence[str]) -> list[list[str]]:
        import bm25s

        tokens: list[list[str]] = bm25s.tokenize(
            list(texts),
            lower=bool(self.params["lower"]),
            token_pattern=str(self.params["token_pattern"]),
            stopwords=self.params["stopwords"],
            stemmer=self._stem,
            return_ids=False,
            show_progress=False,
        )
        return tokens


class LexicalIndex:
    """A loaded BM25 index over a catalog's products."""

    def __init__(
        self, bm25: Any, ids: list[str], manifest: IndexManifest, path: Path | None = None
    ) -> None:
        self._bm25 = bm25
        self.ids = ids
        self.manifest = manifest
        self.path = path
        self.tokenize = _Tokenizer(manifest.details)
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        return len(self.ids)

    @property
    def on_gpu(self) -> bool:
        return False

    def term_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Index term ids of each text (terms the catalog never uses are dropped: they add 0)."""
        with self._lock:  # bm25s's tokenizer state is not documented as thread-safe
            tokens = self.tokenize(texts)
        return [self._bm25.get_tokens_ids(words) for words in tokens]

    def search_texts(self, texts: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k products by BM25 for each text: (scores float32 (n, k'), rows int64 (n, k'))
        with k' = min(k, size); -1 rows where fewer products share a term with the text."""
        return self._search_ids(self.term_ids(texts), k)

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The same search for rows of LexicalQueryEncoder output (term ids, -1 padded)."""
        queries = np.asarray(vectors)
        if queries.ndim == 1:
            queries = queries.reshape(1, -1)
        if queries.ndim != 2:
            raise ValueError(f"term-id rows have shape {queries.shape}, expected (n, width)")
        return self._search_ids([[int(t) for t in row if t >= 0] for row in queries], k)

    def _search_ids(self, queries: list[list[int]], k: int) -> tuple[np.ndarray, np.ndarray]:
        depth = min(int(k), self.size)
        scores = np.zeros((len(queries), max(depth, 0)), dtype=np.float32)
        rows = np.full((len(queries), max(depth, 0)), -1, dtype=np.int64)
        if depth <= 0:
            return scores, rows
        for position, term_ids in enumerate(queries):
            if not term_ids:
                continue
            doc_scores = np.asarray(self._bm25.get_scores_from_ids(term_ids), dtype=np.float32)
            hits = _top_rows(doc_scores, depth)
            rows[position, : hits.size] = hits
            scores[position, : hits.size] = doc_scores[hits]
        return scores, rows


def _top_rows(doc_scores: np.ndarray, depth: int) -> np.ndarray:
    """Rows of the `depth` best positive scores, best first, equal scores by row."""
    candidates = np.flatnonzero(doc_scores > 0)
    if candidates.size > depth:
        values = doc_scores[candidates]
        kth = np.partition(values, candidates.size - depth)[candidates.size - depth]
        above = candidates[values > kth]
        ties = candidates[values == kth][: depth - above.size]
        candidates = np.concatenate([above, ties])
    order = np.lexsort((candidates, -doc_scores[candidates]))
    ranked: np.ndarray = candidates[order].astype(np.int64)
    return ranked


class LexicalQueryEncoder:
    """The stand-in encoder of a lexical retriever (see the module docstring): texts -> index
    term ids as float32 rows (exact below 2^24 terms), -1 padded to MAX_QUERY_TERMS."""

    def __init__(self, index: LexicalIndex) -> None:
        self.index = index
        self.name = LEXICAL_ENCODER
        self.dim = MAX_QUERY_TERMS
        self.backend = BM25

    def encode(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        out = np.full((len(texts), self.dim), -1.0, dtype=np.float32)
        for row, term_ids in enumerate(self.index.term_ids(texts)):
            kept = term_ids[: self.dim]
            out[row, : len(kept)] = kept
        return out


def build_lexical_index(
    catalog: Catalog,
    out_dir: Path | str,
    params: dict[str, Any] | None = None,
    overwrite: bool = True,
) -> LexicalIndex:
    """Tokenise every product passage (title + text), index it with bm25s and write the index
    directory atomically (built in a temporary sibling, then renamed)."""
    import bm25s

    if not catalog.products:
        raise IndexBuildError(f"catalog {catalog.name!r} has no products")
    ids = [product.id for product in catalog.products]
    if len(set(ids)) != len(ids):
        raise IndexBuildError(f"catalog {catalog.name!r} has duplicate product ids")
    params = dict(params or default_params())
    tokenizer = _Tokenizer(params)
    corpus = tokenizer([product.passage() for product in catalog.products])
    bm25 = bm25s.BM25(k1=float(params["k1"]), b=float(params["b"]), method=str(params["method"]))
    bm25.index(corpus, show_progress=False)
    if len(bm25.vocab_dict) >= 1 << 24:
        raise IndexBuildError(
            f"catalog {catalog.name!r} has {len(bm25.vocab_dict)} distinct terms; term ids above 2^24 are not exact in float32"
        )
    catalog_hash = catalog.fingerprint()
    checksum = params_checksum(params)
    details = {**params, "bm25s": _version("bm25s"), "vocabulary": len(bm25.vocab_dict)}
    manifest = IndexManifest(
        encoder=LEXICAL_ENCODER,
        dim=MAX_QUERY_TERMS,
        normalized=False,
        catalog=catalog.name,
        catalog_hash=catalog_hash,
        index_type=BM25,
        size=len(ids),
        version=index_version(LEXICAL_ENCODER, catalog_hash, BM25, INDEX_FORMAT, BM25, checksum),
        format=INDEX_FORMAT,
        backend=BM25,
        quantization="none",
        encoder_checksum=checksum,
        details=details,
    )
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        bm25.save(str(tmp / BM25_DIR), show_progress=False)
        (tmp / IDS_FILE).write_text(json.dumps(ids), encoding="utf-8")
        (tmp / MANIFEST_FILE).write_text(
            json.dumps(manifest.to_dict(), indent=2) + "\n", encoding="utf-8"
        )
        try:
            tmp.rename(out)
        except OSError:
            if not out.exists():
                raise
            if not overwrite:
                logger.info("BM25 index %s appeared while building; using it", out)
                return load_lexical_index(out, expected_catalog_hash=catalog_hash)
            shutil.rmtree(out)
            tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("built BM25 index of %d products at %s", len(ids), out)
    return LexicalIndex(bm25, ids, manifest, out)


def load_lexical_index(path: Path | str, expected_catalog_hash: str | None = None) -> LexicalIndex:
    """Load a BM25 index directory (IndexLoadError with one line when it cannot be used)."""
    import bm25s

    root = Path(path)
    manifest = read_manifest(root, index_types=(BM25,))
    check_manifest(manifest, root, LEXICAL_ENCODER, expected_catalog_hash, BM25)
    if manifest.encoder_checksum != params_checksum(
        {key: manifest.details.get(key) for key in DEFAULT_PARAMS}
    ):
        raise IndexLoadError(f"index manifest {root / MANIFEST_FILE}: BM25 parameters changed")
    ids_path = root / IDS_FILE
    try:
        ids = json.loads(ids_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise IndexLoadError(f"index id map {ids_path} is missing or not valid JSON") from None
    if not isinstance(ids, list) or not all(isinstance(item, str) for item in ids):
        raise IndexLoadError(f"index id map {ids_path} is not a JSON list of product ids")
    try:
        bm25 = bm25s.BM25.load(str(root / BM25_DIR), mmap=False, show_progress=False)
    except Exception as exc:  # bm25s raises numpy and OS errors of several types
        raise IndexLoadError(
            f"BM25 index {root / BM25_DIR} cannot be read ({type(exc).__name__})"
        ) from None
    documents = int(bm25.scores.get("num_docs", -1))
    if documents != len(ids) or len(ids) != manifest.size:
        raise IndexLoadError(
            f"BM25 index at {root} holds {documents} documents, its id map {len(ids)} and its manifest {manifest.size}"
        )
    return LexicalIndex(bm25, ids, manifest, root)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


__all__ = [
    "DEFAULT_PARAMS",
    "LEXICAL_ENCODER",
    "MAX_QUERY_TERMS",
    "LexicalIndex",
    "LexicalQueryEncoder",
    "build_lexical_index",
    "default_params",
    "load_lexical_index",
]
