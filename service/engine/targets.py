"""What partial texts are scored against, and THE label grammar of the service.

- ScoringTarget: graded relevance labels and an optional candidate pool (retrieval games).
- RewardTarget: the prompt (and optional label) a reward model scores partial responses with.
- parse_label: a trainer's per-prompt label (OpenRLHF's `labels[i]`, a dataset field) ->
  ParsedLabel. The trainer client parses with the same grammar (`trainer_client._labels`);
  tests/contract runs one table of labels through both and requires identical results or
  identical errors, so /reward's scalar reward and /attribute's coalition values are always
  computed on the same game.

Label grammar: a string that does not start with "{" is a catalog query id (trimmed); an
integer is a query id; a JSON object (a dict, or a string holding one) with `query_id` or
`relevant` and an optional `pool`; any other JSON object is graded labels
{"<product id>": gain}. Gains lie in (0, 100].
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from service.errors import InvalidRequest
from service.schemas import MAX_GAIN

_STRUCTURED_KEYS = frozenset({"query_id", "relevant", "pool"})


def canonical_digest(value: object) -> str:
    """sha256 of the canonical JSON of `value` (sorted keys, no spaces): equal labels or pools
    give equal cache keys whatever order the client sent them in."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ScoringTarget:
    """Graded labels and optional candidate pool one partial query is scored against."""

    relevant: Mapping[str, float]
    pool: frozenset[str] | None
    digest: str
    pool_digest: str

    @classmethod
    def build(cls, relevant: Mapping[str, float], pool: Sequence[str] | None) -> ScoringTarget:
        labels = {str(pid): float(gain) for pid, gain in relevant.items()}
        pool_set = None if pool is None else frozenset(pool)
        pool_digest = "" if pool_set is None else canonical_digest(sorted(pool_set))
        return cls(labels, pool_set, canonical_digest(labels), pool_digest)

    @property
    def key(self) -> str:
        """Everything about the target that changes a score (dedupe within a request)."""
        return f"{self.digest}\x00{self.pool_digest}"


@dataclass(frozen=True)
class RewardTarget:
    """The prompt (and optional label) a reward model scores partial responses with."""

    prompt: str
    label: str
    key: str

    @classmethod
    def build(cls, prompt: str, label: str | None) -> RewardTarget:
        label = label or ""
        return cls(prompt, label, canonical_digest({"prompt": prompt, "label": label}))


@dataclass(frozen=True)
class ParsedLabel:
    """Exactly one of `query_id` and `relevant`; `pool` optional."""

    query_id: str | None = None
    relevant: Mapping[str, float] | None = None
    pool: tuple[str, ...] | None = None


def parse_label(label: object, field: str = "label") -> ParsedLabel:
    """Parse one label (grammar in the module docstring); InvalidRequest naming `field`."""
    if label is None or (isinstance(label, str) and not label.strip()):
        raise _error(f"{field} is missing: give a catalog query id or graded labels", field)
    if isinstance(label, bool) or not isinstance(label, str | int | Mapping):
        raise _error(
            f"{field} must be a catalog query id or a JSON object of labels, "
            f"not {type(label).__name__}",
            field,
        )
    if isinstance(label, int):
        return ParsedLabel(query_id=str(label))
    document: object = label
    if isinstance(label, str):
        stripped = label.strip()
        if not stripped.startswith("{"):
            return ParsedLabel(query_id=stripped)
        try:
            document = json.loads(stripped)
        except ValueError as exc:
            raise _error(f"{field} is not valid JSON: {exc}", field) from exc
    if not isinstance(document, Mapping):
        raise _error(f"{field} must be a JSON object", field)
    if not _STRUCTURED_KEYS.intersection(document):
        return ParsedLabel(relevant=_gains(document, field))
    unknown = sorted(str(key) for key in document if key not in _STRUCTURED_KEYS)
    if unknown:
        raise _error(
            f"{field} has unknown key(s) {', '.join(unknown)}; expected query_id or relevant, "
            "and optionally pool",
            field,
        )
    if "query_id" in document and "relevant" in document:
        raise _error(f"{field} has both query_id and relevant; give one", field)
    pool = _pool(document["pool"], f"{field}.pool") if "pool" in document else None
    if "query_id" in document:
        query_id = _query_id(document["query_id"], f"{field}.query_id")
        return ParsedLabel(query_id=query_id, pool=pool)
    if "relevant" in document:
        return ParsedLabel(relevant=_gains(document["relevant"], f"{field}.relevant"), pool=pool)
    raise _error(f"{field} has a pool but no query_id or relevant", field)


def _error(message: str, field: str) -> InvalidRequest:
    return InvalidRequest(message, field=field)


def _query_id(value: object, field: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value.strip():
        raise _error(f"{field} must be a non-empty string", field)
    return value.strip()


def _gains(value: object, field: str) -> dict[str, float]:
    if not isinstance(value, Mapping) or not value:
        raise _error(f"{field} must be a non-empty object of product id -> gain", field)
    gains: dict[str, float] = {}
    for product_id, gain in value.items():
        if (
            isinstance(gain, bool)
            or not isinstance(gain, int | float)
            or not 0.0 < gain <= MAX_GAIN
        ):
            raise _error(
                f"{field}: the gain of {str(product_id)!r} must be a number in (0, {MAX_GAIN:g}]",
                field,
            )
        gains[str(product_id)] = float(gain)
    return gains


def _pool(value: object, field: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(p, str) and p for p in value):
        raise _error(f"{field} must be a non-empty list of product ids", field)
    return tuple(value)


__all__ = [
    "ParsedLabel",
    "RewardTarget",
    "ScoringTarget",
    "canonical_digest",
    "parse_label",
]
