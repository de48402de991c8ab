"""NDCG with graded gains, pools, empty results and labels the index does not hold."""

from __future__ import annotations

import math

import pytest

from service.attribution import dcg, ndcg_at_k


def test_dcg_by_hand():
    assert dcg([3, 0, 1]) == pytest.approx(7 / 1 + 0 + 1 / 2)
    assert dcg([]) == 0.0


def test_graded_gains():
    ranked = ["a", "b", "c"]
    relevant = {"a": 3, "c": 1}
    # DCG = (2^3-1)/log2(2) + 0 + (2^1-1)/log2(4); ideal order a, c: 7/1 + 1/log2(3)
    expected = (7 + 0.5) / (7 + 1 / math.log2(3))
    assert ndcg_at_k(ranked, relevant, k=3) == pytest.approx(expected)
    assert ndcg_at_k(["a", "c", "b"], relevant, k=3) == pytest.approx(1.0)


def test_cut_at_k():
    assert ndcg_at_k(["b", "a"], {"a": 1}, k=1) == 0.0
    assert ndcg_at_k(["b", "a"], {"a": 1}, k=2) == pytest.approx(1 / math.log2(3))
    # The ideal list is cut at k too: two relevant, k = 1, the first hit is relevant -> 1.
    assert ndcg_at_k(["a", "b"], {"a": 1, "b": 1}, k=1) == pytest.approx(1.0)


def test_pool_filters_results_and_the_ideal():
    ranked = ["x", "a", "y", "c"]
    pool = {"a", "c", "y"}
    relevant = {"a": 1, "c": 2, "z": 3}  # z is relevant but outside the pool
    # filtered list a, y, c: 1/1 + 0 + 3/log2(4); ideal within pool: c (3), a (1)
    expected = (1 + 3 / 2) / (3 + 1 / math.log2(3))
    assert ndcg_at_k(ranked, relevant, k=10, pool=pool) == pytest.approx(expected)
    assert ndcg_at_k(ranked, relevant, k=10, pool=["q"]) == 0.0


def test_empty_results_and_no_labels():
    assert ndcg_at_k([], {"a": 1}, k=10) == 0.0
    assert ndcg_at_k(["a", "b"], {}, k=10) == 0.0
    assert ndcg_at_k(["a"], {"a": 1}, k=0) == 0.0


def test_labels_outside_the_index_contribute_nothing_but_count_in_the_ideal():
    # "ghost" is never retrieved: it adds 0 to the DCG but stays in the ideal ranking.
    assert ndcg_at_k(["a", "b"], {"a": 1, "ghost": 1}, k=10) == pytest.approx(
        1 / (1 + 1 / math.log2(3))
    )
    # Retrieved ids without a label also contribute 0.
    assert ndcg_at_k(["u", "v", "a"], {"a": 2}, k=10) == pytest.approx((3 / 2) / 3)


def test_repeated_ids_count_once():
    assert ndcg_at_k(["a", "a", "a"], {"a": 1}, k=3) == pytest.approx(1.0)
