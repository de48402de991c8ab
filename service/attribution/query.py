"""Which characters of a response form the search query that takes part in the game."""

from __future__ import annotations

import re

from .errors import InvalidSpanError

_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def extract_query(text: str, span: tuple[int, int] | None = None) -> tuple[int, int]:
    """Char range of the search query in `text`: `span` when given, else the content of the
    (last) <answer>...</answer>, else the whole text; whitespace trimmed off both ends.

    An all-whitespace query gives an empty range (start == end).
    """
    if span is not None:
        start, end = span
        if not (0 <= start <= end <= len(text)):
            raise InvalidSpanError(span, len(text))
        return _trim(text, start, end)
    matches = list(_ANSWER_RE.finditer(text))
    if matches:
        last = matches[-1]
        return _trim(text, last.start(1), last.end(1))
    return _trim(text, 0, len(text))
