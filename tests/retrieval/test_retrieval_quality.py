"""With the real packaged MiniLM, the demo catalog rewards naming the target's distinguishing
attributes: the precise query retrieves exact products, vague filler does not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.attribution import ndcg_at_k
from service.retrieval.catalog import Catalog
from service.retrieval.demo import specific_query
from service.retrieval.encoder import Encoder
from service.retrieval.index import VectorIndex, build_index
from service.retrieval.registry import Retriever

FILLER = "please, I think I would like something nice, thanks"


@pytest.fixture(scope="module")
def demo_minilm_index(
    demo_catalog: Catalog,
    minilm: Encoder,
    demo_minilm_vectors: np.ndarray,
    tmp_path_factory: pytest.TempPathFactory,
) -> VectorIndex:
    out = tmp_path_factory.mktemp("minilm") / "index"
    return build_index(
        demo_catalog, minilm, "flat", out, progress=False, vectors=demo_minilm_vectors
    )


def test_precise_queries_beat_filler_and_the_vague_request(
    demo_catalog: Catalog, minilm: Encoder, demo_minilm_index: VectorIndex
) -> None:
    retriever = Retriever("default", minilm, demo_minilm_index, demo_catalog)
    sample = list(demo_catalog.queries)[::8]  # 32 requests across the categories
    precise = [specific_query(demo_catalog.query_attributes[qid]) for qid in sample]
    vague = [demo_catalog.queries[qid] for qid in sample]
    k = 100
    results = retriever.search(precise + vague + [FILLER], k)
    score = [
        ndcg_at_k([pid for pid, _ in hits], demo_catalog.labels[qid], k)
        for hits, qid in zip(results, sample + sample, strict=False)
    ]
    precise_ndcg, vague_ndcg = score[: len(sample)], score[len(sample) :]
    filler_hits = [pid for pid, _ in results[-1]]
    filler_ndcg = [ndcg_at_k(filler_hits, demo_catalog.labels[qid], k) for qid in sample]

    wins = sum(p > f for p, f in zip(precise_ndcg, filler_ndcg, strict=True))
    assert wins >= 0.9 * len(sample), (wins, len(sample))
    assert np.mean(precise_ndcg) > np.mean(vague_ndcg) > np.mean(filler_ndcg)
    assert np.mean(precise_ndcg) > 0.6

    # The top hit of a precise query is usually an exact match.
    exact_first = sum(
        demo_catalog.labels[qid].get(results[i][0][0]) == 1.0 for i, qid in enumerate(sample)
    )
    assert exact_first >= 0.7 * len(sample)


def test_index_build_encodes_like_the_cached_vectors(
    demo_catalog: Catalog, minilm: Encoder, demo_minilm_vectors: np.ndarray, tmp_path: Path
) -> None:
    head = demo_catalog.products[:16]
    fresh = minilm.encode([p.passage() for p in head])
    np.testing.assert_allclose(fresh, demo_minilm_vectors[:16], atol=1e-4)
