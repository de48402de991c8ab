"""The compatible extensions of `options`: `sampler` (random non-contiguous subsets for the
ablation) and `outside` (what tokens outside the query receive)."""

from __future__ import annotations

import asyncio
import re

import numpy as np

from service.engine import AttributionEngine, EncodeBatcher
from service.schemas import AttributeRequest

TEXT = "<think>the shopper wants boots</think><answer>waterproof leather hiking boots for women, size 8, with ankle support, in black</answer>"


def body(**options: object) -> dict:
    offsets = [(m.start(), m.end()) for m in re.finditer(r"\S+", TEXT)]
    return {
        "groups": [
            {
                "id": "g0",
                "target": {"query_id": "demo-0000"},
                "responses": [
                    {"text": TEXT, "token_offsets": offsets, "reward": 1.0},
                    {"text": "<answer>nice things</answer>", "reward": 0.0},
                ],
            }
        ],
        "options": {"max_width": 2, "max_coalitions": 12, "k": 50, "explain": True, **options},
    }


def run(engine: AttributionEngine, payload: dict):
    return asyncio.run(engine.attribute(AttributeRequest.model_validate(payload)))


def test_random_sampler_evaluates_non_contiguous_coalitions(registry, cache) -> None:
    engine = AttributionEngine(registry, cache, batcher=EncodeBatcher(window_s=0))
    contiguous = run(engine, body()).groups[0].responses[0].coalitions
    sampled = run(engine, body(sampler="random")).groups[0].responses[0].coalitions
    assert contiguous is not None and sampled is not None

    def has_gap(members: list[int]) -> bool:
        return bool(members) and members != list(range(members[0], members[-1] + 1))

    assert not any(has_gap(c.members) for c in contiguous)
    assert any(has_gap(c.members) for c in sampled)
    assert len(sampled) <= 12
    # A gapped coalition's query joins its runs with one space.
    gapped = next(c for c in sampled if has_gap(c.members))
    assert "  " not in gapped.query


def test_outside_zero_moves_the_outside_mass_onto_the_query(registry, cache) -> None:
    engine = AttributionEngine(registry, cache, batcher=EncodeBatcher(window_s=0))
    keep = run(engine, body(clip=None)).groups[0].responses[0]
    zero = run(engine, body(clip=None, outside="zero")).groups[0].responses[0]
    assert keep.token_advantages is not None and zero.token_advantages is not None
    keep_t, zero_t = np.array(keep.token_advantages), np.array(zero.token_advantages)
    answer_start = TEXT.index("<answer>") + len("<answer>")
    offsets = [(m.start(), m.end()) for m in re.finditer(r"\S+", TEXT)]
    outside = np.array([end <= answer_start for _, end in offsets])
    assert keep.advantage == zero.advantage != 0
    assert np.allclose(keep_t[outside], keep.advantage)
    assert np.allclose(zero_t[outside], 0.0)
    # Either way the mean over every token is the sequence advantage.
    assert np.isclose(keep_t.mean(), keep.advantage) and np.isclose(zero_t.mean(), zero.advantage)
