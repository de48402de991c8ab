"""The label grammar: what a trainer's per-prompt ``label`` may say about its target.

A label is what OpenRLHF (``--data.label_key``), TRL or verl datasets carry per prompt:

- a string that does not start with ``{``: a catalog query id (whitespace trimmed);
- an integer: a catalog query id (ESCI's ids are numbers);
- a JSON object (a dict, or a string holding one) with ``query_id`` or ``relevant`` and an
  optional ``pool`` (candidate product ids the ranking is filtered to before NDCG);
- any other JSON object: graded labels, ``{"<product id>": gain, ...}``.

Gains are numbers in (0, 100]. The service parses labels with the same grammar
(``service.engine.targets.parse_label``); a contract test runs one table of labels through
both and requires identical results or identical errors, so a trainer's coalition values
and ``/reward``'s scalar reward are always computed on the same game.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_GAIN", "LabelError", "ParsedLabel", "parse_label"]

MAX_GAIN = 100.0
_STRUCTURED_KEYS = frozenset({"query_id", "relevant", "pool"})


class LabelError(ValueError):
    """A label that does not follow the grammar; ``field`` names the part at fault."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __reduce__(self) -> tuple[type[LabelError], tuple[str, str]]:
        # Errors cross process boundaries (Ray workers, ranks): keep both arguments.
        return (type(self), (self.message, self.field))


@dataclass(frozen=True)
class ParsedLabel:
    """Exactly one of ``query_id`` and ``relevant``; ``pool`` optional."""

    query_id: str | None = None
    relevant: Mapping[str, float] | None = None
    pool: tuple[str, ...] | None = None


def parse_label(label: Any, field: str = "label") -> ParsedLabel:
    """Parse one label (see the module docstring); :class:`LabelError` naming ``field``."""
    if label is None or (isinstance(label, str) and not label.strip()):
        raise LabelError(f"{field} is missing: give a catalog query id or graded labels", field)
    if isinstance(label, bool) or not isinstance(label, str | int | Mapping):
        raise LabelError(
            f"{field} must be a catalog query id or a JSON object of labels, "
            f"not {type(label).__name__}",
            field,
        )
    if isinstance(label, int):
        return ParsedLabel(query_id=str(label))
    if isinstance(label, str):
        stripped = label.strip()
        if not stripped.startswith("{"):
            return ParsedLabel(query_id=stripped)
        try:
            label = json.loads(stripped)
        except ValueError as exc:
            raise LabelError(f"{field} is not valid JSON: {exc}", field) from exc
        if not isinstance(label, Mapping):
            raise LabelError(f"{field} must be a JSON object", field)
    if not _STRUCTURED_KEYS.intersection(label):
        return ParsedLabel(relevant=_gains(label, field))
    unknown = sorted(str(key) for key in label if key not in _STRUCTURED_KEYS)
    if unknown:
        raise LabelError(
            f"{field} has unknown key(s) {', '.join(unknown)}; expected query_id or relevant, "
            "and optionally pool",
            field,
        )
    if "query_id" in label and "relevant" in label:
        raise LabelError(f"{field} has both query_id and relevant; give one", field)
    pool = _pool(label["pool"], f"{field}.pool") if "pool" in label else None
    if "query_id" in label:
        return ParsedLabel(query_id=_query_id(label["query_id"], f"{field}.query_id"), pool=pool)
    if "relevant" in label:
        return ParsedLabel(relevant=_gains(label["relevant"], f"{field}.relevant"), pool=pool)
    raise LabelError(f"{field} has a pool but no query_id or relevant", field)


def _query_id(value: Any, field: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value.strip():
        raise LabelError(f"{field} must be a non-empty string", field)
    return value.strip()


def _gains(value: Any, field: str) -> dict[str, float]:
    if not isinstance(value, Mapping) or not value:
        raise LabelError(f"{field} must be a non-empty object of product id -> gain", field)
    gains: dict[str, float] = {}
    for product_id, gain in value.items():
        if (
            isinstance(gain, bool)
            or not isinstance(gain, int | float)
            or not 0.0 < gain <= MAX_GAIN
        ):
            raise LabelError(
                f"{field}: the gain of {str(product_id)!r} must be a number in (0, {MAX_GAIN:g}]",
                field,
            )
        gains[str(product_id)] = float(gain)
    return gains


def _pool(value: Any, field: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(p, str) and p for p in value):
        raise LabelError(f"{field} must be a non-empty list of product ids", field)
    return tuple(value)
