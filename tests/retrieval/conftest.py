"""Retrieval fixtures: a small hand-made catalog, and the demo catalog's MiniLM vectors
(encoded once and kept in a temp-dir cache keyed by the catalog fingerprint, because encoding
2,400 products takes tens of seconds on 2 cores). `demo_catalog` comes from tests/support."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

for _name, _value in (
    ("HF_HUB_OFFLINE", "1"),
    ("TRANSFORMERS_OFFLINE", "1"),
    ("TOKENIZERS_PARALLELISM", "false"),
):
    os.environ.setdefault(_name, _value)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from service.retrieval.catalog import Catalog, Product  # noqa: E402
from service.retrieval.encoder import Encoder, load_encoder  # noqa: E402
from service.retrieval.index import encode_products  # noqa: E402


@pytest.fixture
def tiny_catalog() -> Catalog:
    products = [
        Product(
            "p1", "Waterproof leather hiking boots", "Women's boots for mountain trails, brown."
        ),
        Product("p2", "Trail running shoes", "Lightweight mesh running shoes with grippy soles."),
        Product(
            "p3",
            "Stainless steel water bottle",
            "Insulated bottle, keeps drinks cold for 24 hours.",
        ),
        Product(
            "p4",
            "Noise-cancelling headphones",
            "Wireless over-ear headphones with long battery life.",
        ),
        Product("p5", "Cork yoga mat", "Non-slip eco-friendly mat, 6 mm thick."),
        Product("p6", "Espresso coffee maker", "Programmable machine with a built-in grinder."),
        Product(
            "p7",
            "Mesh office chair",
            "Ergonomic chair with lumbar support and adjustable armrests.",
        ),
        Product("p8", "Ultralight backpacking tent", "Two-person freestanding tent, quick setup."),
    ]
    return Catalog(
        name="small",
        products=products,
        queries={"q1": "boots for hiking in the rain", "q2": "a chair for my home office"},
        labels={"q1": {"p1": 1.0, "p2": 0.1}, "q2": {"p7": 1.0}},
        split={"q1": "train", "q2": "test"},
    )


@pytest.fixture(scope="session")
def minilm() -> Encoder:
    return load_encoder("all-MiniLM-L6-v2", device="cpu")


@pytest.fixture(scope="session")
def demo_minilm_vectors(demo_catalog: Catalog, minilm: Encoder) -> np.ndarray:
    cache_dir = Path(tempfile.gettempdir()) / "ospo-test-cache"
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"{minilm.name}-{demo_catalog.fingerprint()[:16]}.npy"
    if path.exists():
        vectors: np.ndarray = np.load(path)
        if vectors.shape == (len(demo_catalog.products), minilm.dim):
            return vectors
    vectors = encode_products(demo_catalog, minilm, progress=False)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, vectors)
    os.replace(tmp, path)
    return vectors
