"""Query extraction: explicit span, else the last <tag> outside the reasoning, else the last
piece of text outside the reasoning; trimmed, one contiguous range, linear time."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.attribution import AttributionError, InvalidSpanError, extract_query


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


def query(text, **kwargs):
    return _cut(text, extract_query(text, **kwargs))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Reasoning is never part of the query.
        ("<think>reasoning</think> cotton cardigan", "cotton cardigan"),
        ("<think>a cardigan</think><answer>cotton cardigan</answer>", "cotton cardigan"),
        ("<THINK>x</Think> red shoes", "red shoes"),
        ("red shoes <think>but maybe blue", "red shoes"),  # unclosed: reasoning to the end
        ("<think>only reasoning, never closed <answer>boots</answer>", ""),
        ("<think>a</think><think>b <think>c</think> d", "d"),  # a nested <think> is reasoning
        # The chat template opened <think> in the prompt: everything before </think> reasons.
        ("the user wants boots</think>\nleather boots", "leather boots"),
        ("<think>a</think> b </think> c", "c"),
        # Several pieces outside the reasoning: the last non-blank one (one contiguous range).
        ("draft query <think>hmm</think> final query <think>done</think>  ", "final query"),
        ("<think>a</think>  <think>b</think>", ""),
        # The last tag outside the reasoning wins; an unclosed tag runs to the end.
        ("<answer>a</answer> <answer>b", "b"),
        ("<answer> wool socks \n", "wool socks"),
        ("<answer>a</answer><think><answer>not this</answer></think>", "a"),
        ("<answer>wool socks <think>or cotton?</think> for men</answer>", "wool socks"),
        ("<answer>wool socks <think>or cotton?", "wool socks"),
        ("<answer>q</answer><answer> </answer>", ""),  # the last answer is blank: no query
        ("<answer>a <answer>b</answer>", "b"),
        # Without an opening tag a stray closing tag is plain text.
        ("boots</answer>", "boots</answer>"),
    ],
)  # fmt: skip
def test_extraction_rules(text, expected):
    assert query(text) == expected


def test_query_tag_is_configurable():
    text = "<search>first</search> info <search> second query </search><answer>42</answer>"
    assert query(text, tag="search") == "second query"
    assert query(text) == "42"
    assert query(text, tag="SEARCH") == "second query"
    assert query("<query-v2>a b</query-v2>", tag="query-v2") == "a b"
    assert query("<think><search>x</search></think><search>y", tag="search") == "y"


@pytest.mark.parametrize("tag", ["", "1abc", "a b", "a>", "a.b", "é", "x" * 33, "think", "THINK"])
def test_invalid_query_tag(tag):
    with pytest.raises(AttributionError) as caught:
        extract_query("<answer>x</answer>", tag=tag)
    assert caught.value.field == "query_tag"
    with pytest.raises(AttributionError):
        extract_query("x", (0, 1), tag=tag)


def test_span_wins_over_reasoning_and_tags():
    text = "<think>boots</think><answer>shoes</answer>"
    assert query(text, span=(0, len(text))) == text
    assert query(text, span=(7, 12)) == "boots"


def test_unicode_case_folding_does_not_shift_offsets():
    # Only ASCII letters fold: offsets index the original text (İ lower-cases to 2 chars).
    text = "İİİ <think>x</think> cotton <answer>İ cardigan</answer>"
    assert query(text) == "İ cardigan"
    assert query("<thınk>x</thınk> a") == "<thınk>x</thınk> a"  # dotless ı is not an i


fragments = st.sampled_from(
    [
        "<think>", "</think>", "<answer>", "</answer>", "<THINK>", "</Answer>", "<search>",
        "</search>", "<", ">", "</", " ", "\n", "boots", "red", "é", "<thi", "nk>", "<answer",
    ]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(fragments, max_size=30), tag=st.sampled_from(["answer", "search"]))
def test_the_query_is_trimmed_and_never_holds_reasoning_tags(parts, tag):
    text = "".join(parts)
    start, end = extract_query(text, tag=tag)
    assert 0 <= start <= end <= len(text)
    found = text[start:end]
    assert found == found.strip()
    assert not re.search(r"</?think>", found, re.IGNORECASE)
    lower = text.lower()
    if "think>" not in lower:  # no reasoning: a plain reference for the tag rules
        opener = lower.rfind(f"<{tag}>")
        if opener < 0:
            assert found == text.strip()
        else:
            begin = opener + len(tag) + 2
            close = lower.find(f"</{tag}>", begin)
            assert found == text[begin : close if close >= 0 else len(text)].strip()


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "make",
    [
        lambda n: "<" * n,
        lambda n: "<answer" * (n // 7),
        lambda n: "<answer>" * (n // 8),
        lambda n: "<think>" * (n // 7),
        lambda n: "</think>" * (n // 8),
        lambda n: "<answer>x</answer><think>" * (n // 25),
        lambda n: "<think></think>" * (n // 15) + " " * n,
        lambda n: "</answer><answer" * (n // 16),
        lambda n: "<" + " " * n + "a",
    ],
)
def test_linear_on_pathological_inputs(make):
    # 200k characters full of '<': a backtracking pattern (e.g. <answer>(.*?)</answer> tried
    # from every opening) would take minutes; one scan for the tags takes milliseconds.
    text = make(200_000)
    start, end = extract_query(text)
    assert 0 <= start <= end <= len(text)
