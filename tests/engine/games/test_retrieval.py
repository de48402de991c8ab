"""RowScorer (NDCG from faiss rows) equals service.attribution.ndcg_at_k exactly."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from service.attribution import ndcg_at_k
from service.engine.games.retrieval import RowScorer

IDS = [f"P{i:03d}" for i in range(40)]
ids_st = st.sampled_from(IDS + ["OUTSIDE1", "OUTSIDE2"])  # labels may name products not indexed


@settings(max_examples=300, deadline=None)
@given(
    ranked=st.lists(st.integers(0, len(IDS) - 1), unique=True, max_size=40),
    pad=st.integers(0, 3),
    relevant=st.dictionaries(ids_st, st.sampled_from([0.01, 0.1, 0.5, 1.0, 2.0, 3.0]), max_size=10),
    pool=st.one_of(st.none(), st.frozensets(ids_st, max_size=15)),
    k=st.integers(1, 45),
)
def test_row_scorer_matches_ndcg_at_k(ranked, pad, relevant, pool, k):
    rows = np.asarray(ranked + [-1] * pad, dtype=np.int64)  # faiss pads with -1
    scorer = RowScorer(IDS)
    got = scorer.score(scorer.prepare(relevant, pool, k), rows, k)
    expected = ndcg_at_k([IDS[r] for r in ranked], relevant, k, pool)
    assert got == expected


def test_hand_checked_value():
    scorer = RowScorer(IDS)
    # Relevant P001 (gain 1) at rank 2, P000 (gain 1) missing from the top 2: DCG = 1/log2(3),
    # ideal = 1 + 1/log2(3).
    value = scorer.score(
        scorer.prepare({"P000": 1.0, "P001": 1.0}, None, 2), np.array([5, 1, 0]), 2
    )
    assert value == (1 / np.log2(3)) / (1 + 1 / np.log2(3))
