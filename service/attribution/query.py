"""Which characters of a response form the search query that takes part in the game.

Rules (`extract_query`), in order:

1. An explicit `span` wins (trimmed).
2. Reasoning is never part of the query. A think region runs from `<think>` to the next
   `</think>`, or to the end of the text when unclosed. A `</think>` with no `<think>` open
   before it means the reasoning began before the response (chat templates that open
   `<think>` in the prompt), so everything up to it is reasoning.
3. The query is the content of the last `<tag>` outside think regions (`tag` defaults to
   `answer`; e.g. `search` for Search-R1-style policies). It ends at the first `</tag>` or
   think region after it, else at the end of the text (an unclosed tag runs to the end).
   The last tag wins even when its content is blank: that is what the policy answered.
4. With no such tag, the text outside think regions. The query must be one contiguous
   range, so when that text is in several pieces the last non-blank piece is taken (the
   text after the reasoning: "<think>…</think> cotton cardigan" -> "cotton cardigan").

Tags are matched case-insensitively (ASCII), whitespace is trimmed off both ends, and the
work is linear in the text (one scan for tags, no backtracking regular expression).
"""

from __future__ import annotations

import functools
import re

from .errors import AttributionError, InvalidSpanError

_TAG_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}")
_THINK = "think"


@functools.lru_cache(maxsize=32)
def _tags_re(tag: str) -> re.Pattern[str]:
    return re.compile(rf"<(/?)({_THINK}|{re.escape(tag)})>", re.IGNORECASE | re.ASCII)


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _check_tag(tag: str) -> None:
    if not isinstance(tag, str) or not _TAG_NAME_RE.fullmatch(tag):
        raise AttributionError(
            f"query_tag {tag!r} is not a tag name (a letter, then up to 31 letters, digits, "
            "'_' or '-')",
            field="query_tag",
        )
    if tag.lower() == _THINK:
        raise AttributionError(
            "query_tag 'think' names the reasoning, which is never part of the query",
            field="query_tag",
        )


def extract_query(
    text: str, span: tuple[int, int] | None = None, tag: str = "answer"
) -> tuple[int, int]:
    """Char range (start, end) of the search query in `text` (rules in the module docstring):
    `span` when given; else the content of the last `<tag>` outside `<think>` regions, up to
    its `</tag>`, the next think region or the end; else the last non-blank piece of the text
    outside think regions. Whitespace trimmed off both ends.

    An all-whitespace (or absent) query gives an empty range (start == end). A `tag` that is
    not a tag name, or is `think`, raises AttributionError (field "query_tag")."""
    _check_tag(tag)
    if span is not None:
        start, end = span
        if not (0 <= start <= end <= len(text)):
            raise InvalidSpanError(span, len(text))
        return _trim(text, start, end)
    # (start, end, closing, is_think) of every tag of interest, in text order.
    tags = [
        (m.start(), m.end(), m.group(1) == "/", m.group(2).lower() == _THINK)
        for m in _tags_re(tag).finditer(text)
    ]
    regions: list[tuple[int, int]] = []  # sorted, disjoint think regions
    opened: int | None = None
    for start, end, closing, is_think in tags:
        if not is_think:
            continue
        if not closing:
            if opened is None:  # a nested <think> is part of the open reasoning
                opened = start
        elif opened is not None:
            regions.append((opened, end))
            opened = None
        else:  # a stray </think>: the reasoning started before the text
            regions = [(0, end)]
    if opened is not None:
        regions.append((opened, len(text)))

    # The last opening <tag> outside every think region.
    last: int | None = None
    index = 0
    for k, (start, _, closing, is_think) in enumerate(tags):
        if is_think or closing:
            continue
        while index < len(regions) and regions[index][1] <= start:
            index += 1
        if index == len(regions) or start < regions[index][0]:
            last = k
    if last is not None:
        # Its content ends at the next tag of any kind: that is its </tag> or the <think>
        # opening the next region (a later <tag> outside the reasoning would be the last
        # one, and a </think> there would need a <think> before it, or make this tag
        # reasoning).
        stop = tags[last + 1][0] if last + 1 < len(tags) else len(text)
        return _trim(text, tags[last][1], stop)

    # No tag: the last non-blank piece of the text outside the think regions.
    piece_end = len(text)
    for region_start, region_end in reversed(regions):
        start, end = _trim(text, region_end, piece_end)
        if start < end:
            return start, end
        piece_end = region_start
    start, end = _trim(text, 0, piece_end)
    if start < end:
        return start, end
    return len(text), len(text)
