"""Terminal rendering of an /attribute response: the query with each segment coloured by its
Owen value (blue positive, red negative, stronger colour for larger |value|, like SHAP's text
plot), a table of segments, the reward and the top retrieved products.

Pure formatting of JSON-shaped data (what /attribute and /v1/retrievers/{name}/search return):
no I/O, no service imports, so it renders a remote server's answer and an in-process one alike.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

Span = tuple[int, int]
RGB = tuple[int, int, int]

# SHAP's plot colours, with the signs the issue asks for: blue positive, red negative.
POSITIVE_RGB: RGB = (0, 139, 251)
NEGATIVE_RGB: RGB = (255, 0, 81)
WHITE: RGB = (255, 255, 255)
# The faintest shade a non-zero value gets, so a small but real credit stays visible.
MIN_ALPHA = 0.2
RESET = "\x1b[0m"
BOLD = "\x1b[1m"
DIM = "\x1b[2m"

SEGMENT_WIDTH = 40
# ASCII whitespace and tag names only: JavaScript and Python disagree on what \s and \w match.
_TOKEN = re.compile(r"[ \t\n\r\f\v]*(?:</?[A-Za-z][A-Za-z0-9_-]*>|[^ \t\n\r\f\v<]+|<)")


def word_token_offsets(text: str) -> list[Span]:
    """Word-level stand-in for a trainer's tokens: each word (or `<tag>`) with the whitespace
    before it, so the offsets cover the text up to trailing whitespace. The same rule is
    implemented in inspect.js; both must agree."""
    return [match.span() for match in _TOKEN.finditer(text)]


def use_color(
    no_color_flag: bool, stream: TextIO, environ: Mapping[str, str] | None = None
) -> bool:
    """Colour only on a terminal, and never with --no-color or a non-empty NO_COLOR
    (https://no-color.org)."""
    env = os.environ if environ is None else environ
    if no_color_flag or env.get("NO_COLOR", ""):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def shade(value: float, scale: float) -> RGB | None:
    """The background of a segment: white blended towards blue (positive) or red (negative)
    by |value| / scale; None for an exact zero (left unshaded)."""
    if value == 0.0 or scale <= 0.0:
        return None
    strength = min(1.0, abs(value) / scale)
    alpha = MIN_ALPHA + (1.0 - MIN_ALPHA) * strength
    base = POSITIVE_RGB if value > 0 else NEGATIVE_RGB
    r, g, b = (round(w + (c - w) * alpha) for w, c in zip(WHITE, base, strict=True))
    return (r, g, b)


def _luminance(rgb: RGB) -> float:
    r, g, b = rgb
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def paint(text: str, value: float, scale: float) -> str:
    """`text` with a 24-bit ANSI background for `value` and a readable foreground."""
    background = shade(value, scale)
    if background is None:
        return text
    foreground = "30" if _luminance(background) > 150 else "97"
    r, g, b = background
    return f"\x1b[48;2;{r};{g};{b}m\x1b[{foreground}m{text}{RESET}"


@dataclass(frozen=True)
class SegmentRow:
    """One line of the segment table."""

    index: int
    text: str
    value: float | None  # None: unmeasured (no evaluated coalition pair)
    credit: float
    token_min: float | None
    token_max: float | None


def segment_rows(
    response: Mapping[str, Any], token_offsets: Sequence[Sequence[int]] | None = None
) -> list[SegmentRow]:
    """The table rows of one response; the token range covers the tokens overlapping the
    segment (None when the response has no token advantages)."""
    advantages = response.get("token_advantages")
    rows: list[SegmentRow] = []
    for index, segment in enumerate(response.get("segments", [])):
        start, end = int(segment["start"]), int(segment["end"])
        inside: list[float] = []
        if advantages is not None and token_offsets is not None:
            inside = [
                float(a)
                for (t_start, t_end), a in zip(token_offsets, advantages, strict=True)
                if t_start < end and t_end > start
            ]
        rows.append(
            SegmentRow(
                index=index,
                text=str(segment["text"]),
                value=None if segment.get("value") is None else float(segment["value"]),
                credit=float(segment["credit"]),
                token_min=min(inside) if inside else None,
                token_max=max(inside) if inside else None,
            )
        )
    return rows


def query_span(response: Mapping[str, Any]) -> Span | None:
    """The query's character range: segments partition the query, so first start to last end."""
    segments = response.get("segments") or []
    if not segments:
        return None
    return int(segments[0]["start"]), int(segments[-1]["end"])


def value_scale(responses: Sequence[Mapping[str, Any]]) -> float:
    """The largest |Owen value| over a group, so shades compare across its responses."""
    values = [
        abs(float(s["value"]))
        for r in responses
        for s in r.get("segments", [])
        if s.get("value") is not None
    ]
    return max(values, default=0.0)


def render_query(text: str, response: Mapping[str, Any], *, color: bool, scale: float) -> str:
    """The query with its segments coloured, or in [brackets] when colour is off."""
    span = query_span(response)
    if span is None:
        return text.strip() or "(empty query)"
    pieces: list[str] = []
    cursor = span[0]
    for segment in response["segments"]:
        start, end = int(segment["start"]), int(segment["end"])
        pieces.append(text[cursor:start])
        piece = text[start:end]
        value = segment.get("value")
        shaded = paint(piece, float(value), scale) if value is not None else piece
        pieces.append(shaded if color else f"[{piece}]")
        cursor = end
    return "".join(pieces)


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def signed(x: float) -> str:
    """+0.1234 / -0.1234; a negative zero prints as +0.0000 (as the web page shows it)."""
    return f"{x + 0.0:+.4f}"


def _range(row: SegmentRow) -> str:
    if row.token_min is None or row.token_max is None:
        return "-"
    return f"{signed(row.token_min)} .. {signed(row.token_max)}"


TABLE_HEADERS = ("#", "segment", "owen value", "credit", "token advantage")
UNMEASURED = "unmeasured"
"""What the value column says for a segment the coalition plan could not measure."""


def render_table(rows: Sequence[SegmentRow]) -> str:
    """Fixed-column table: index, segment text, Owen value, credit share, token advantage range."""
    texts = [_clip(row.text, SEGMENT_WIDTH) for row in rows]
    width = max([len(TABLE_HEADERS[1]), *map(len, texts)])
    cells = [
        (
            str(row.index),
            text,
            UNMEASURED if row.value is None else signed(row.value),
            f"{100.0 * row.credit:.2f}%",
            _range(row),
        )
        for row, text in zip(rows, texts, strict=True)
    ]
    widths = [max(len(TABLE_HEADERS[c]), *(len(cell[c]) for cell in cells)) for c in range(5)]
    widths[1] = width

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            [
                values[0].rjust(widths[0]),
                values[1].ljust(widths[1]),
                values[2].rjust(widths[2]),
                values[3].rjust(widths[3]),
                values[4].rjust(widths[4]),
            ]
        ).rstrip()

    header = line(TABLE_HEADERS)
    rule = "  ".join("-" * w for w in widths)
    return "\n".join([header, rule, *(line(cell) for cell in cells)])


def render_hits(hits: Sequence[Mapping[str, Any]]) -> str:
    if not hits:
        return "    (no results)"
    lines = []
    for rank, hit in enumerate(hits, start=1):
        title = _clip(str(hit.get("title", "")), 70)
        lines.append(f"    {rank:>2}. {hit['id']}  {float(hit['score']):.4f}  {title}")
    return "\n".join(lines)


def render_coalitions(response: Mapping[str, Any]) -> str:
    """The evaluated coalitions (explain: true): members, value and the partial query."""
    coalitions = response.get("coalitions") or []
    if not coalitions:
        return "    (no coalitions evaluated)"
    lines = []
    for coalition in coalitions:
        members = "{" + ",".join(str(m) for m in coalition["members"]) + "}"
        query = _clip(str(coalition["query"]), 60) or "(empty)"
        lines.append(f"    {members:<16} {float(coalition['value']):.4f}  {query}")
    return "\n".join(lines)


def _styled(text: str, style: str, color: bool) -> str:
    return f"{style}{text}{RESET}" if color else text


def render_report(
    texts: Sequence[str],
    result: Mapping[str, Any],
    *,
    token_offsets: Sequence[Sequence[Sequence[int]] | None],
    hits: Sequence[Sequence[Mapping[str, Any]] | None],
    color: bool,
    explain: bool = False,
) -> str:
    """The whole terminal view of a one-group /attribute result for the responses `texts`."""
    responses: list[Mapping[str, Any]] = list(result["groups"][0]["responses"])
    scale = value_scale(responses) or 1.0
    model = result.get("model", {})
    out: list[str] = []
    if color:
        legend = f"{paint(' positive ', scale, scale)} {paint(' negative ', -scale, scale)}"
        out.append(f"colour: {legend}  (stronger = larger |Owen value|)")
    out.append(
        f"retriever {model.get('retriever', '?')}  encoder {model.get('encoder', '?')}  "
        f"{len(responses)} response(s)"
    )
    for number, (text, response) in enumerate(zip(texts, responses, strict=True), start=1):
        out.append("")
        title = (
            f"response {number}/{len(responses)}  reward {float(response['reward']):.4f}  "
            f"advantage {signed(float(response['advantage']))}"
        )
        out.append(_styled(title, BOLD, color))
        out.append("  query: " + render_query(text, response, color=color, scale=scale))
        out.append("")
        table = render_table(segment_rows(response, token_offsets[number - 1]))
        out.extend("  " + line for line in table.splitlines())
        response_hits = hits[number - 1]
        if response_hits is not None:
            out.append("")
            out.append(f"  top products ({model.get('retriever', '?')}):")
            out.append(render_hits(response_hits))
        if explain:
            out.append("")
            out.append("  coalitions (members, value, partial query):")
            out.append(render_coalitions(response))
    if len(responses) == 1:
        out.append("")
        out.append(
            _styled(
                "note: a group of one response has advantage 0; pass several TEXTs to compare.",
                DIM,
                color,
            )
        )
    return "\n".join(out) + "\n"


__all__ = [
    "NEGATIVE_RGB",
    "POSITIVE_RGB",
    "TABLE_HEADERS",
    "SegmentRow",
    "paint",
    "query_span",
    "render_coalitions",
    "render_hits",
    "render_query",
    "render_report",
    "render_table",
    "segment_rows",
    "shade",
    "signed",
    "use_color",
    "value_scale",
    "word_token_offsets",
]
