"""service/cli/render.py: colours, tokens and the segment table, on hand-made responses."""

from __future__ import annotations

import io
import re

from hypothesis import given
from hypothesis import strategies as st

from service.cli.render import (
    NEGATIVE_RGB,
    POSITIVE_RGB,
    paint,
    render_query,
    render_report,
    render_table,
    segment_rows,
    shade,
    use_color,
    word_token_offsets,
)

ANSI = re.compile(r"\x1b\[[0-9;]*m")
TEXT = "<answer>waterproof leather boots for women</answer>"


def _response() -> dict[str, object]:
    start = TEXT.index("waterproof")
    spans = [(start, start + 18), (start + 19, start + 24), (start + 25, start + 34)]
    return {
        "reward": 0.5,
        "advantage": 0.75,
        "segments": [
            {"start": s, "end": e, "text": TEXT[s:e], "value": v, "credit": c}
            for (s, e), v, c in zip(spans, (0.3, -0.1, 0.0), (0.75, 0.0, 0.25), strict=True)
        ],
    }


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_use_color_rules() -> None:
    assert use_color(False, _Tty(), environ={})
    assert not use_color(True, _Tty(), environ={})
    assert not use_color(False, _Tty(), environ={"NO_COLOR": "1"})
    assert use_color(False, _Tty(), environ={"NO_COLOR": ""})  # empty means unset
    assert not use_color(False, io.StringIO(), environ={})


def test_signs_pick_blue_and_red() -> None:
    blue = shade(1.0, 1.0)
    red = shade(-1.0, 1.0)
    assert blue == POSITIVE_RGB and red == NEGATIVE_RGB
    assert shade(0.0, 1.0) is None
    assert "48;2;0;139;251" in paint("x", 2.0, 1.0)  # clamped at full strength
    assert paint("x", 0.0, 1.0) == "x"


@given(st.floats(0.0, 1.0), st.floats(0.0, 1.0), st.sampled_from([1.0, -1.0]))
def test_larger_magnitude_is_stronger(a: float, b: float, sign: float) -> None:
    low, high = sorted((a, b))
    if low == 0.0:
        return
    weak, strong = shade(sign * low, 1.0), shade(sign * high, 1.0)
    assert weak is not None and strong is not None
    # Further from white in every channel (or equal).
    assert all(s <= w for w, s in zip(weak, strong, strict=True))


@given(st.text(alphabet=st.sampled_from(list("ab <>/\t\n\u00a0é🎒x")), max_size=40))
def test_word_tokens_are_sorted_disjoint_and_cover_the_words(text: str) -> None:
    tokens = word_token_offsets(text)
    last_end = 0
    for start, end in tokens:
        assert last_end <= start < end <= len(text)
        assert start == last_end  # each token begins where the last ended (leading whitespace)
        assert text[start:end].strip(" \t\n\r\f\v")  # never only (ASCII) whitespace
        last_end = end
    assert text[last_end:].strip(" \t\n\r\f\v") == ""


def test_word_tokens_split_tags() -> None:
    pieces = [TEXT[s:e] for s, e in word_token_offsets(TEXT)]
    assert pieces == ["<answer>", "waterproof", " leather", " boots", " for", " women", "</answer>"]


def test_rows_and_token_ranges() -> None:
    response = _response()
    offsets = word_token_offsets(TEXT)
    response["token_advantages"] = [0.75, 1.5, 1.5, 0.1, 0.2, 0.2, 0.75]
    rows = segment_rows(response, offsets)
    assert [r.text for r in rows] == ["waterproof leather", "boots", "for women"]
    # "waterproof leather" covers tokens 1 and 2; "boots" token 3; "for women" tokens 4-5.
    assert (rows[0].token_min, rows[0].token_max) == (1.5, 1.5)
    assert (rows[1].token_min, rows[1].token_max) == (0.1, 0.1)
    assert (rows[2].token_min, rows[2].token_max) == (0.2, 0.2)
    without = segment_rows(_response(), None)
    assert without[0].token_min is None


def test_plain_query_and_table() -> None:
    response = _response()
    assert (
        render_query(TEXT, response, color=False, scale=0.3)
        == "[waterproof leather] [boots] [for women]"
    )
    coloured = render_query(TEXT, response, color=True, scale=0.3)
    assert ANSI.sub("", coloured) == "waterproof leather boots for women"
    assert "48;2;255;" in coloured  # the negative segment is red
    table = render_table(segment_rows(response)).splitlines()
    assert table[0].split() == ["#", "segment", "owen", "value", "credit", "token", "advantage"]
    assert table[2].split() == ["0", "waterproof", "leather", "+0.3000", "75.00%", "-"]
    assert table[3].split() == ["1", "boots", "-0.1000", "0.00%", "-"]


def test_report_without_color_has_no_escape_codes() -> None:
    result = {"groups": [{"responses": [_response()]}], "model": {"retriever": "default"}}
    report = render_report([TEXT], result, token_offsets=[None], hits=[[]], color=False)
    assert not ANSI.search(report)
    assert "reward 0.5000" in report and "advantage +0.7500" in report
    assert "group of one" in report
    coloured = render_report([TEXT], result, token_offsets=[None], hits=[None], color=True)
    assert ANSI.search(coloured)
