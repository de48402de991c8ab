"""Segmenters: the partition property on random text and on real shopping queries, and the
phrase splitter's expected cuts on real examples."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.attribution import (
    MAX_PHRASE_WORDS,
    UnknownOptionError,
    segment,
    segment_phrases,
    segment_sentences,
    segment_words,
)

WHITESPACE = [" ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u2003", "\u3000", "\u2028", "\x0b"]
WORDS = [
    "waterproof", "boots", "for", "with", "and", "&", "or", "size", "8", "pack", "of", "2",
    "need", "looking", "12", "inch", "in", "on", "women", ",", "-", "(pack", "2)", "x", "by",
    "compatible", "slip", "café", "naïve", "😀", "👩‍👩‍👧", "日本語", "…", "!!", "3.5", "1/2",
    "i'm", "the", "w/", ".", "?", "|", "Dr.", "St.", "U.S.", "in.", "No.", "vs.", "approx.",
    "J.", "e.g.", "no.", "oz.", "12in.", "(Mr.",
]  # fmt: skip

shopping_text = st.lists(
    st.tuples(st.sampled_from(WORDS), st.sampled_from(WHITESPACE)), max_size=40
).map(lambda pairs: "".join(w + s for w, s in pairs))
any_text = st.one_of(
    st.text(max_size=120),
    st.text(
        alphabet=st.sampled_from(list("ab,.!? \t\n\u00a0\u2003\u3000\u2028\x0b😀&|()")), max_size=80
    ),
    shopping_text,
    st.tuples(st.sampled_from(WHITESPACE), shopping_text, st.sampled_from(WHITESPACE)).map("".join),
)


def words_in(text, span):
    return len(text[span[0] : span[1]].split())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=any_text)
def test_every_segmenter_partitions_random_text(text, assert_partition):
    for mode in ("phrase", "sentence", "word"):
        assert_partition(text, segment(text, mode))


@settings(max_examples=300, deadline=None)
@given(text=any_text)
def test_phrases_have_one_to_six_words(text):
    for span in segment_phrases(text):
        assert 1 <= words_in(text, span) <= MAX_PHRASE_WORDS


def test_real_queries_partition_and_phrase_lengths(real_queries, assert_partition):
    for query in real_queries:
        spans = segment_phrases(query)
        assert_partition(query, spans)
        assert all(words_in(query, span) <= MAX_PHRASE_WORDS for span in spans), query
        if len(query.split()) >= 4:
            assert len(spans) >= 2, query
        for mode in ("sentence", "word"):
            assert_partition(query, segment(query, mode))


def split(text):
    return [text[s:e] for s, e in segment_phrases(text)]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # The example, with and without commas.
        (
            "waterproof leather hiking boots for women size 8 with ankle support",
            ["waterproof leather hiking boots", "for women", "size 8", "with ankle support"],
        ),
        (
            "waterproof leather hiking boots for women, size 8, with ankle support",
            ["waterproof leather hiking boots", "for women,", "size 8,", "with ankle support"],
        ),
        # Real ESCI / WANDS queries.
        ("sojos small round polarized sunglasses for women", ["sojos small round polarized sunglasses", "for women"]),
        ("zipper sweaters for women without hoodie", ["zipper sweaters", "for women", "without hoodie"]),
        ("48 inch bathroom vanity with trough sink", ["48 inch bathroom vanity", "with trough sink"]),
        ("mobley zero gravity adjustable bed with wireless remote", ["mobley zero gravity adjustable bed", "with wireless remote"]),
        ("real touch roses floral arrangements in glass vase", ["real touch roses floral arrangements", "in glass vase"]),
        ("1/2 pint double wall containers without lids", ["1/2 pint double wall containers", "without lids"]),
        ("futon frames full size without mattress", ["futon frames full size", "without mattress"]),
        ("3 piece rug set with runners", ["3 piece rug set", "with runners"]),
        ("48 in entry table with side by side drawer", ["48 in entry table", "with side by side drawer"]),
        # Unit phrases and preference verbs.
        ("paper towels pack of 2 for kitchen", ["paper towels", "pack of 2", "for kitchen"]),
        ("i need a waterproof jacket for hiking", ["i need a waterproof jacket", "for hiking"]),
        ("running shoes looking for arch support", ["running shoes", "looking for arch support"]),
        ("queen size bed frame with headboard", ["queen size bed frame", "with headboard"]),
        ("slip on shoes for women", ["slip on shoes", "for women"]),
        ("black and white dress for men and women", ["black and white dress", "for men and women"]),
        ("phone case compatible with iphone 12", ["phone case", "compatible with iphone 12"]),
    ],
)  # fmt: skip
def test_phrase_splits_on_real_examples(query, expected):
    assert split(query) == expected


def test_multi_word_attribute_phrases_stay_together(real_queries):
    # Phrases that must never be cut apart wherever they occur in the real queries.
    phrases = ["hiking boots", "for women", "for men", "wall art", "coffee table", "size 8"]
    seen = 0
    for query in real_queries:
        for phrase in phrases:
            start = query.find(phrase)
            if start < 0 or (start and query[start - 1] != " "):
                continue
            seen += 1
            end = start + len(phrase)
            assert any(s <= start and end <= e for s, e in segment_phrases(query)), (query, phrase)
    assert seen >= 10


def test_long_phrase_is_chunked_without_cutting_units():
    query = "kraus kitchen sink faucet oletto kpf 2820 sfs"
    parts = split(query)
    assert len(parts) == 2 and all(len(p.split()) <= 6 for p in parts)
    # The balanced cut would fall inside "12 inch": the unit moves to the next chunk whole.
    parts = split("heavy duty outdoor camping tent 12 inch stakes set")
    assert len(parts) == 2 and any("12 inch" in p for p in parts), parts
    # A unit phrase opens its own phrase and is never cut.
    parts = split("tent pack of 2 extra large heavy duty waterproof outdoor camping")
    assert parts[0] == "tent" and parts[1].startswith("pack of 2"), parts
    assert all(len(p.split()) <= 6 for p in parts)


def test_short_queries():
    assert split("boots") == ["boots"]
    assert split("") == []
    assert split("   \n ") == []
    assert split("t towels kitchen paper")[0] != "t towels kitchen paper"


def test_sentences_and_words():
    text = "First one. Second one!  Third?\nA 3.5 inch item e.g. this\n\nEnd"
    assert [text[s:e] for s, e in segment_sentences(text)] == [
        "First one.",
        "Second one!",
        "Third?",
        "A 3.5 inch item e.g. this",  # an abbreviation's period ends nothing
        "End",
    ]
    words = "a  b\tc😀 "
    assert [words[s:e] for s, e in segment_words(words)] == ["a", "b", "c😀"]
    with pytest.raises(UnknownOptionError):
        segment("a b", "spacy")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("Dr. Martens boots for women", ["Dr. Martens boots", "for women"]),
        ("St. Patrick's day shirt for men", ["St. Patrick's day shirt", "for men"]),
        ("Mr. Coffee maker with timer", ["Mr. Coffee maker", "with timer"]),
        ("No. 2 pencils pack of 12", ["No. 2 pencils", "pack of 12"]),
        ("nike vs. adidas", ["nike vs. adidas"]),
        ("approx. 5 lbs", ["approx. 5 lbs"]),
        ("12 in. wide shelf with drawers", ["12 in. wide shelf", "with drawers"]),
        ("48 in. entry table with side by side drawer", ["48 in. entry table", "with side by side drawer"]),
        ("U.S. flag for porch", ["U.S. flag", "for porch"]),
        ("J. Crew sweater for women", ["J. Crew sweater", "for women"]),
        # A real end of phrase still cuts: "in." with no number, "no." before no number.
        ("boots. red", ["boots.", "red"]),
        ("socks in. wool", ["socks", "in.", "wool"]),
        ("I said no. Then boots", ["I said no.", "Then boots"]),
        ("Get size M. Red shoes for men", ["Get size M.", "Red shoes", "for men"]),
    ],
)  # fmt: skip
def test_abbreviations_do_not_end_a_phrase(query, expected, assert_partition):
    assert split(query) == expected
    assert_partition(query, segment_phrases(query))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Dr. Smith lives in the U.S. now. He is here.", ["Dr. Smith lives in the U.S. now.", "He is here."]),
        ("It is 12 in. wide. Done.", ["It is 12 in. wide.", "Done."]),
        ("It fits in. Done.", ["It fits in.", "Done."]),
        ("Get No. 5 now. Yes", ["Get No. 5 now.", "Yes"]),
        ("Answer: no. Fine.", ["Answer: no.", "Fine."]),
        ("A 12oz. mug vs. a cup, approx. half. Ok", ["A 12oz. mug vs. a cup, approx. half.", "Ok"]),
        ("Ask J. R. R. Tolkien. Then go.", ["Ask J. R. R. Tolkien.", "Then go."]),
        ("I need size M. Red is fine.", ["I need size M.", "Red is fine."]),
        ("Wait... What? (Really.) Yes!", ["Wait...", "What?", "(Really.)", "Yes!"]),
    ],
)  # fmt: skip
def test_abbreviations_do_not_end_a_sentence(text, expected, assert_partition):
    assert [text[s:e] for s, e in segment_sentences(text)] == expected
    assert_partition(text, segment_sentences(text))
