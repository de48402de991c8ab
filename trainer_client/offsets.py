"""Character offsets of a trainer's own tokens, for ``Response.token_offsets``.

The service credits characters; the trainer updates tokens. :func:`token_offsets` maps
each token to the half-open character span it contributes to the decoded text:

* fast path: a fast tokenizer's offset mapping of the decoded text, used only when
  re-encoding that text gives back exactly the same ids;
* fallback: incremental decoding, the end of token ``k`` being ``len(decode(ids[:k+1]))``,
  for slow tokenizers and for id sequences that do not survive a decode/encode round trip.

Both paths produce the same canonical spans: sorted, disjoint, trimmed of surrounding
whitespace (a whitespace-only token gets an empty span), a character shared by several
byte-level tokens going to the first of them, and special tokens (EOS, padding) getting an
empty span ``start == end`` at the current position. The fallback costs one decode per
token (quadratic in length), which is fine for responses of a few thousand tokens.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["TokenOffsets", "token_offsets"]

logger = logging.getLogger(__name__)

Span = tuple[int, int]
Method = Literal["auto", "offsets", "decode"]


@dataclass(frozen=True)
class TokenOffsets:
    """Token ids and their character spans in ``text``; ``method`` says which path ran."""

    text: str
    ids: tuple[int, ...]
    offsets: tuple[Span, ...]
    method: Literal["offsets", "decode"]


def token_offsets(
    tokenizer: Any, text_or_ids: str | Sequence[int], *, method: Method = "auto"
) -> TokenOffsets:
    """Spans of the tokens of ``text_or_ids`` in their decoded text.

    ``tokenizer`` is a Hugging Face tokenizer (fast or slow). Given ids (the trainer's
    sampled tokens), the text is their decode without special tokens; given a string, it
    is tokenised without special tokens and the spans point into that string (or into its
    decode when only the fallback applies). ``method`` forces a path (tests, debugging);
    forcing ``"offsets"`` raises ``ValueError`` when the fast path cannot be used.
    """
    special = frozenset(int(i) for i in getattr(tokenizer, "all_special_ids", ()) or ())
    if isinstance(text_or_ids, str):
        ids = _encode(tokenizer, text_or_ids)
        given_text: str | None = text_or_ids
    else:
        ids = [int(i) for i in text_or_ids]
        given_text = None

    if method in ("auto", "offsets"):
        text = given_text if given_text is not None else _decode(tokenizer, ids)
        spans = _fast_spans(tokenizer, text, ids, special)
        if spans is not None:
            return TokenOffsets(text, tuple(ids), tuple(spans), "offsets")
        if method == "offsets":
            raise ValueError("the tokenizer gives no offset mapping that reproduces these ids")
        logger.debug("offset mapping unusable for %d tokens; decoding incrementally", len(ids))

    text = _decode(tokenizer, ids)
    return TokenOffsets(
        text, tuple(ids), tuple(_decode_spans(tokenizer, text, ids, special)), "decode"
    )


def _encode(tokenizer: Any, text: str) -> list[int]:
    return [int(i) for i in tokenizer(text, add_special_tokens=False)["input_ids"]]


def _decode(tokenizer: Any, ids: Sequence[int]) -> str:
    # No clean-up: it rewrites spaces around punctuation, which breaks prefix consistency.
    return str(
        tokenizer.decode(list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=False)
    )


def _fast_spans(
    tokenizer: Any, text: str, ids: Sequence[int], special: frozenset[int]
) -> list[Span] | None:
    if not getattr(tokenizer, "is_fast", False):
        return None
    try:
        encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    except (NotImplementedError, ValueError, TypeError):
        return None
    plain = [i for i in ids if i not in special]
    if [int(i) for i in encoding["input_ids"]] != plain:
        return None
    raw = iter(encoding["offset_mapping"])
    spans: list[Span] = []
    position = 0
    for token in ids:
        if token in special:
            spans.append((position, position))
            continue
        start, end = next(raw)
        span = _canonical(text, int(start), int(end), position)
        spans.append(span)
        position = span[1]
    return spans


def _decode_spans(
    tokenizer: Any, text: str, ids: Sequence[int], special: frozenset[int]
) -> list[Span]:
    spans: list[Span] = []
    position = 0  # end of the text produced so far
    for k, token in enumerate(ids):
        if token in special:
            spans.append((position, position))
            continue
        end = min(len(_decode(tokenizer, ids[: k + 1])), len(text))
        span = _canonical(text, position, end, position)
        spans.append(span)
        position = max(position, end)
    return spans


def _canonical(text: str, start: int, end: int, floor: int) -> Span:
    """``[start, end)`` moved past ``floor`` (no overlap) and trimmed of whitespace."""
    start = max(start, floor)
    end = max(end, start)
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if start == end:
        start = end = max(floor, min(end, len(text)))
    return (start, end)
