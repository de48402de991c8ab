"""Agreement of a retriever with a reference retriever (PyTorch) on what the service computes:
the embeddings of partial queries, their NDCG@k, and the order of segment credit.

A backend is only as good as the credit it produces. For realistic GRPO responses to demo
catalog queries, every coalition of the service's default plan (owen, contiguous windows up to
width 8, 96 coalitions, seeded as the engine seeds them) is scored under both retrievers;
the report gives the cosine between their query embeddings, |ΔNDCG@k| over every distinct
partial query, and the share of responses whose segments come out in the same order of Owen
value (pairwise: i above, tied with, or below j under both).

Used by tests/retrieval (bounds) and bench/backends.py (figures).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from service.attribution import (
    coalition_plan,
    coalition_seed,
    extract_query,
    ndcg_at_k,
    owen_values,
    partial_query,
    segment,
)

if TYPE_CHECKING:
    from service.retrieval.catalog import Catalog
    from service.retrieval.registry import Retriever

FILLERS = (
    "please",
    "I think",
    "for everyday use",
    "something nice",
    "thanks",
    "good value",
    "if possible",
    "nothing fancy",
    "for a gift",
    "with fast delivery",
    "maybe",
    "high quality",
)
TIE = 1e-9
"""Owen values closer than this count as tied (NDCG values are sums of a few float terms)."""


def demo_responses(
    catalog: Catalog, queries: int = 40, per_query: int = 8, seed: int = 0
) -> list[tuple[str, str]]:
    """(query id, response) pairs like a search policy's rollouts: each response's answer
    mixes a random subset of the request's target attributes with filler phrases, in random
    order, 4-11 phrases long. Deterministic for a seed."""
    rng = random.Random(seed)
    pairs: list[tuple[str, str]] = []
    for query_id in list(catalog.queries)[:queries]:
        attributes = catalog.query_attributes.get(query_id, {})
        noun = attributes.get("category", "item").replace("-", " ")
        facts = [noun] + [value for key, value in attributes.items() if key != "category"]
        for _ in range(per_query):
            chosen = rng.sample(facts, rng.randint(1, len(facts)))
            fillers = rng.sample(FILLERS, rng.randint(2, 7))
            phrases = chosen + fillers
            rng.shuffle(phrases)
            pairs.append((query_id, "<answer>" + ", ".join(phrases) + "</answer>"))
    return pairs


@dataclass
class AgreementReport:
    backend: str
    reference: str
    k: int
    responses: int
    partial_queries: int
    min_cosine: float | None
    mean_cosine: float | None
    mean_abs_delta_ndcg: float
    max_abs_delta_ndcg: float
    mean_abs_delta_reward: float
    ordering_identical: float
    """Share of responses (with >= 2 segments) whose segment-credit order is identical."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Response:
    query_id: str
    spans: list[tuple[int, int]]
    query: str
    plan: list[frozenset[int]]


def _plan(
    pairs: Sequence[tuple[str, str]], max_width: int, max_coalitions: int, seed: int
) -> list[_Response]:
    planned: list[_Response] = []
    for query_id, text in pairs:
        start, end = extract_query(text)
        query = text[start:end]
        spans = [(a, b) for a, b in segment(query)]
        if not spans:
            continue
        rng = np.random.default_rng(coalition_seed(seed, query))
        plan = coalition_plan(
            len(spans),
            estimator="owen",
            max_width=max_width,
            max_coalitions=max_coalitions,
            rng=rng,
        )
        planned.append(_Response(query_id, spans, query, plan))
    return planned


def _ndcgs(
    retriever: Retriever,
    texts: list[str],
    labels: list[dict[str, float]],
    k: int,
) -> np.ndarray:
    hits = retriever.search(texts, k)
    return np.asarray(
        [
            ndcg_at_k([pid for pid, _ in ranked], relevant, k)
            for ranked, relevant in zip(hits, labels, strict=True)
        ]
    )


def _order_signs(phi: np.ndarray) -> np.ndarray:
    values = np.nan_to_num(phi, nan=-1e9)
    difference = values[:, None] - values[None, :]
    signs: np.ndarray = np.where(np.abs(difference) <= TIE, 0, np.sign(difference))
    return signs


def agreement(
    reference: Retriever,
    candidate: Retriever,
    pairs: Sequence[tuple[str, str]],
    *,
    k: int = 1000,
    max_width: int = 8,
    max_coalitions: int = 96,
    seed: int = 0,
) -> AgreementReport:
    """Compare `candidate` with `reference` (same catalog) on the responses in `pairs`."""
    planned = _plan(pairs, max_width, max_coalitions, seed)
    keys: dict[tuple[str, str], int] = {}
    for response in planned:
        for members in response.plan:
            if members:
                text = partial_query(response.query, response.spans, members)
                keys.setdefault((response.query_id, text), len(keys))
    items = list(keys)
    texts = [text for _, text in items]
    labels = [reference.catalog.labels.get(query_id, {}) for query_id, _ in items]
    ref_ndcg = _ndcgs(reference, texts, labels, k)
    cand_ndcg = _ndcgs(candidate, texts, labels, k)
    delta = np.abs(ref_ndcg - cand_ndcg)

    min_cos = mean_cos = None
    if not reference.lexical and not candidate.lexical:
        distinct = list(dict.fromkeys(texts))
        a, b = reference.encode(distinct), candidate.encode(distinct)
        if a.shape == b.shape:
            cosines = np.sum(a * b, axis=1)
            min_cos, mean_cos = float(cosines.min()), float(cosines.mean())

    identical = compared = 0
    reward_deltas: list[float] = []
    for response in planned:
        n = len(response.spans)
        tables = []
        for scores in (ref_ndcg, cand_ndcg):
            table: dict[frozenset[int], float] = {frozenset(): 0.0}
            for members in response.plan:
                if members:
                    text = partial_query(response.query, response.spans, members)
                    table[members] = float(scores[keys[(response.query_id, text)]])
            tables.append(table)
        full = frozenset(range(n))
        if full in tables[0]:
            reward_deltas.append(abs(tables[0][full] - tables[1][full]))
        if n < 2:
            continue
        compared += 1
        same = np.array_equal(
            _order_signs(owen_values(n, tables[0])), _order_signs(owen_values(n, tables[1]))
        )
        identical += int(same)
    return AgreementReport(
        backend=candidate.backend,
        reference=reference.backend,
        k=k,
        responses=len(planned),
        partial_queries=len(items),
        min_cosine=min_cos,
        mean_cosine=mean_cos,
        mean_abs_delta_ndcg=float(delta.mean()) if delta.size else 0.0,
        max_abs_delta_ndcg=float(delta.max()) if delta.size else 0.0,
        mean_abs_delta_reward=float(np.mean(reward_deltas)) if reward_deltas else 0.0,
        ordering_identical=identical / compared if compared else 1.0,
    )


__all__ = ["AgreementReport", "agreement", "demo_responses"]
