"""token_offsets with the two real tokenizers: MiniLM (WordPiece, fast) and SmolLM2 (GGUF,
byte-level BPE). Spans are canonical, cover the decoded text, and both paths agree."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trainer_client import token_offsets

TEXTS = [
    "<think>need boots</think><answer>Waterproof leather hiking-boots, size 8!</answer>",
    "red  running shoes\nfor men (size 10.5)",
    "a",
]
ASCII_WORDS = st.lists(
    st.sampled_from(
        [
            "boots",
            "red",
            "leather",
            "for",
            "women",
            "size",
            "8",
            "-",
            ",",
            "<answer>",
            "</answer>",
            "hiking",
            "waterproof",
            "x2",
            "!",
        ]
    ),
    min_size=1,
    max_size=12,
).map(" ".join)


def check_canonical(result: Any) -> None:
    text = result.text
    previous_end = 0
    for start, end in result.offsets:
        assert previous_end <= start <= end <= len(text)
        piece = text[start:end]
        assert piece == piece.strip()
        previous_end = end
    covered = "".join(text[s:e] for s, e in result.offsets)
    assert covered == "".join(text.split())


def with_special(tokenizer: Any, text: str) -> list[int]:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return [*ids, tokenizer.all_special_ids[0]]


@pytest.mark.parametrize("text", TEXTS)
@pytest.mark.parametrize("which", ["minilm_tokenizer", "smollm2_tokenizer"])
def test_offsets_cover_each_tokens_text(request, which, text):
    tokenizer = request.getfixturevalue(which)
    ids = with_special(tokenizer, text)
    result = token_offsets(tokenizer, ids)
    assert result.method == "offsets"
    assert result.ids == tuple(ids)
    assert len(result.offsets) == len(ids)
    check_canonical(result)
    # the special token at the end gets an empty span
    start, end = result.offsets[-1]
    assert start == end
    for token, (start, end) in zip(ids[:-1], result.offsets[:-1], strict=True):
        own = tokenizer.decode([token], clean_up_tokenization_spaces=False).strip()
        own = own.removeprefix("##")  # WordPiece continuation marker
        assert result.text[start:end] == own


@pytest.mark.parametrize("text", TEXTS)
@pytest.mark.parametrize("which", ["minilm_tokenizer", "smollm2_tokenizer"])
def test_fallback_gives_the_same_spans_on_ascii(request, which, text):
    tokenizer = request.getfixturevalue(which)
    ids = with_special(tokenizer, text)
    fast = token_offsets(tokenizer, ids, method="offsets")
    slow = token_offsets(tokenizer, ids, method="decode")
    assert slow.method == "decode"
    assert slow.text == fast.text
    assert slow.offsets == fast.offsets


@given(text=ASCII_WORDS)
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_fallback_matches_fast_path_property(smollm2_tokenizer, text):
    ids = smollm2_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert (
        token_offsets(smollm2_tokenizer, ids, method="decode").offsets
        == token_offsets(smollm2_tokenizer, ids).offsets
    )


def test_multibyte_characters_with_byte_level_tokens(smollm2_tokenizer):
    text = "héllo wörld 日本 ok"
    ids = smollm2_tokenizer(text, add_special_tokens=False)["input_ids"]
    for method in ("offsets", "decode"):
        result = token_offsets(smollm2_tokenizer, ids, method=method)
        assert result.text == text
        check_canonical(result)


def test_text_input_points_into_the_given_text(minilm_tokenizer):
    text = "Waterproof  BOOTS"
    result = token_offsets(minilm_tokenizer, text)
    assert result.text == text
    assert [text[s:e].lower() for s, e in result.offsets] == ["water", "proof", "boots"]


def test_ids_that_do_not_round_trip_fall_back(smollm2_tokenizer):
    # "hello" spelled letter by letter re-encodes as one token: the offsets path must refuse.
    letters = [smollm2_tokenizer.convert_tokens_to_ids(c) for c in "hello"]
    result = token_offsets(smollm2_tokenizer, letters)
    assert result.method == "decode"
    assert result.text == "hello"
    assert result.offsets == ((0, 1), (1, 2), (2, 3), (3, 4), (4, 5))
    with pytest.raises(ValueError):
        token_offsets(smollm2_tokenizer, letters, method="offsets")


def test_slow_tokenizer_uses_the_fallback(minilm_tokenizer):
    class Slow:
        is_fast = False
        all_special_ids = minilm_tokenizer.all_special_ids

        def __call__(self, *args, **kwargs):
            return minilm_tokenizer(*args, **kwargs)

        def decode(self, *args, **kwargs):
            return minilm_tokenizer.decode(*args, **kwargs)

    ids = minilm_tokenizer("red boots, size 8", add_special_tokens=False)["input_ids"]
    slow = token_offsets(Slow(), ids)
    assert slow.method == "decode"
    assert slow.offsets == token_offsets(minilm_tokenizer, ids).offsets


def test_only_special_tokens(minilm_tokenizer):
    ids = [minilm_tokenizer.cls_token_id, minilm_tokenizer.sep_token_id]
    result = token_offsets(minilm_tokenizer, ids)
    assert result.text == "" and result.offsets == ((0, 0), (0, 0))
