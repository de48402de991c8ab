"""Query extraction: explicit span, else the last <answer>, else the whole text; trimmed."""

from __future__ import annotations

import pytest

from service.attribution import InvalidSpanError, extract_query


def _cut(text, span):
    return text[span[0] : span[1]]


def test_answer_tag_content_is_the_query():
    text = "<think>the user wants boots</think><answer> waterproof boots, size 8 </answer>"
    assert _cut(text, extract_query(text)) == "waterproof boots, size 8"


def test_last_answer_wins_and_tags_are_case_insensitive():
    text = "<answer>draft</answer> more thinking <ANSWER>\nfinal query\n</ANSWER><|eos|>"
    assert _cut(text, extract_query(text)) == "final query"


def test_whole_text_without_tags():
    text = "  red running shoes \n"
    assert extract_query(text) == (2, 19)


def test_explicit_span_wins_and_is_trimmed():
    text = "<answer>ignored</answer>  blue jacket  "
    assert _cut(text, extract_query(text, (24, len(text)))) == "blue jacket"
    with pytest.raises(InvalidSpanError):
        extract_query(text, (5, 100))
    with pytest.raises(InvalidSpanError):
        extract_query(text, (5, 2))


def test_blank_query_is_an_empty_range():
    start, end = extract_query("<answer>   </answer>")
    assert start == end
