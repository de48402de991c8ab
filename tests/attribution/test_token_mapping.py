"""Token mapping with a real tokenizer's offsets (the packaged MiniLM WordPiece tokenizer)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from service.attribution import (
    extract_query,
    segment_phrases,
    token_advantages,
    token_segment_weights,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

RESPONSES = [
    "<think>boots, outdoor</think><answer>waterproof leather hiking boots for women, size 8, "
    "with ankle support</answer>",
    "<answer>Café  table 😀 w/ 2 chairs — pack of 2 (walnut)</answer>",
    "i need a 48 inch bathroom vanity with trough sink and soft close drawers in white oak",
]


@pytest.mark.parametrize("text", RESPONSES)
def test_columns_sum_to_one_and_special_tokens_get_nothing(minilm_tokenizer, text):
    tokenizer = minilm_tokenizer
    encoded = tokenizer(text, return_offsets_mapping=True, add_special_tokens=True)
    offsets = [tuple(pair) for pair in encoded["offset_mapping"]]
    # [CLS] / [SEP] carry empty spans; [UNK] (e.g. for an emoji) is a real token with a span.
    boundary = {tokenizer.cls_token_id, tokenizer.sep_token_id}
    assert encoded["input_ids"][0] in boundary and encoded["input_ids"][-1] in boundary
    query_span = extract_query(text)
    spans = [
        (query_span[0] + s, query_span[0] + e) for s, e in segment_phrases(text[slice(*query_span)])
    ]
    W = token_segment_weights(spans, offsets)
    assert W.shape == (len(spans), len(offsets))
    column_sums = W.sum(axis=0)
    for token_id, (start, end), total in zip(
        encoded["input_ids"], offsets, column_sums, strict=True
    ):
        inside = end > query_span[0] and start < query_span[1] and end > start
        if token_id in boundary or start == end:
            assert start == end and total == 0.0
        elif inside:
            assert total == pytest.approx(1.0), (text[start:end], start, end)
        else:
            assert total == 0.0  # reasoning / tag tokens are covered by no segment
    assert (W >= 0).all()
    # Every segment owns at least one token, and the mean over all tokens stays Â.
    assert (W.sum(axis=1) > 0).all()
    phi = np.linspace(-0.2, 0.9, len(spans))
    for redistribution in ("prop", "rank"):
        out = token_advantages(
            segment_spans=spans,
            phi=phi,
            token_offsets=offsets,
            query_span=query_span,
            advantage=-0.6,
            redistribution=redistribution,
        )
        assert out.mean() == pytest.approx(-0.6)
        assert out[0] == pytest.approx(-0.6)  # [CLS] is outside the query: keeps Â
