"""Typed request and response values mirroring the ospo HTTP contract (docs/API.md).

Requests are built from :class:`Group`, :class:`Response`, :class:`Target` and
:class:`Options`; answers come back as :class:`AttributeResult` and friends. All are frozen
dataclasses: plain values, no I/O. Serialisation lives in ``_client.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from ._labels import parse_label

__all__ = [
    "UNSET",
    "AttributeResult",
    "Coalition",
    "Group",
    "GroupError",
    "GroupResult",
    "ModelInfo",
    "Options",
    "Readiness",
    "Response",
    "ResponseResult",
    "RetrieverInfo",
    "RewardResult",
    "SearchHit",
    "Segment",
    "Stats",
    "Target",
    "UnsetType",
]

Span = tuple[int, int]


class UnsetType:
    """Type of :data:`UNSET`: "not given, let the service choose" (as opposed to ``None``)."""

    _instance: UnsetType | None = None

    def __new__(cls) -> UnsetType:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Final = UnsetType()


@dataclass(frozen=True)
class Target:
    """What a group's responses are judged against: a catalog query id, graded labels, or a
    reward model configured in the service (then ``label`` is passed to it as OpenRLHF's
    ``labels[i]`` and the group needs a ``prompt``)."""

    query_id: str | None = None
    relevant: Mapping[str, float] | None = None
    reward_model: str | None = None
    label: str | None = None

    def __post_init__(self) -> None:
        chosen = [x for x in (self.query_id, self.relevant, self.reward_model) if x is not None]
        if len(chosen) != 1:
            raise ValueError("Target needs exactly one of query_id, relevant or reward_model")
        if self.label is not None and self.reward_model is None:
            raise ValueError("Target.label goes with reward_model only")
        if self.relevant is not None:
            if not self.relevant:
                raise ValueError("Target.relevant must not be empty")
            bad = [pid for pid, gain in self.relevant.items() if not gain > 0]
            if bad:
                raise ValueError(f"Target.relevant gains must be > 0 (bad ids: {bad[:3]})")

    @classmethod
    def from_label(cls, label: Any) -> Target:
        """The target of a trainer's label (``trainer_client._labels`` grammar): a catalog
        query id (str or int), or a JSON object (a dict, or a string holding one) with
        ``query_id`` or ``relevant``, or plain graded labels ``{"<product id>": gain}``.

        A label's ``pool`` is not part of the target: it goes in :attr:`Group.pool`
        (``parse_label`` returns both).
        """
        parsed = parse_label(label)
        if parsed.query_id is not None:
            return cls(query_id=parsed.query_id)
        return cls(relevant=parsed.relevant)


@dataclass(frozen=True)
class Response:
    """One sampled response of a group.

    ``token_offsets`` are the trainer's tokens as half-open character spans into ``text``;
    when given, the result carries one token advantage per offset. ``reward`` is the
    trainer's own terminal reward (``None``: the service computes the retrieval NDCG).
    """

    text: str
    span: Span | None = None
    token_offsets: Sequence[Span] | None = None
    reward: float | None = None


@dataclass(frozen=True)
class Group:
    """The responses sampled for one prompt (a GRPO group) and their target."""

    id: str
    target: Target
    responses: Sequence[Response]
    pool: Sequence[str] | None = None
    prompt: str | None = None  # required by reward-model targets

    def __post_init__(self) -> None:
        if not self.responses:
            raise ValueError(f"group {self.id!r} has no responses")


@dataclass(frozen=True)
class Options:
    """Request options; every field left unset takes the service default (docs/API.md).

    ``clip=None`` disables clipping; leaving it unset keeps the service default.
    ``errors="group"`` asks the service to answer a group it cannot score with a
    :class:`GroupError` (the other groups scored normally) instead of failing the request.
    """

    retriever: str | None = None
    k: int | None = None
    segmenter: str | None = None
    max_width: int | None = None
    max_coalitions: int | None = None
    estimator: str | None = None
    redistribution: str | None = None
    baseline: str | None = None
    clip: float | None | UnsetType = UNSET
    seed: int | None = None
    cache: bool | None = None
    explain: bool | None = None
    sampler: str | None = None  # "contiguous" | "random" (non-contiguous ablation)
    outside: str | None = None  # "advantage" | "zero": what tokens outside the query get
    errors: str | None = None  # "request" (one bad group fails the request) | "group"
    credit: str | None = None  # "positive" | "minmax": how segment values become credit
    negative: str | None = None  # "same" | "inverse": credit of negative-advantage responses
    query_tag: str | None = None  # the tag holding the query (default "answer")
    depth: int | None = None  # ranking depth the retrieval game reads


@dataclass(frozen=True)
class Segment:
    """A segment of the extracted query: its span, Owen value φ and normalised credit φ̃.

    ``value`` is ``None`` when the service measured none (no evaluated coalition pair).
    """

    start: int
    end: int
    text: str
    value: float | None
    credit: float


@dataclass(frozen=True)
class Coalition:
    """One evaluated coalition (only with ``explain``)."""

    members: tuple[int, ...]
    query: str
    value: float


@dataclass(frozen=True)
class ResponseResult:
    """Reward, group advantage, segment credit and (optional) token advantages of a response.

    ``redistributed`` is true when the token advantages were spread by OSPO credit, false
    when they are the plain group advantage Â (fewer than 2 segments, ``uniform``), ``None``
    when the service did not say.
    """

    reward: float
    advantage: float
    segments: tuple[Segment, ...]
    token_advantages: tuple[float, ...] | None = None
    coalitions: tuple[Coalition, ...] | None = None
    redistributed: bool | None = None


@dataclass(frozen=True)
class GroupError:
    """Why the service could not score a group (``options.errors="group"``)."""

    code: str
    message: str
    field: str | None = None


@dataclass(frozen=True)
class GroupResult:
    """A group's responses in request order; empty with ``error`` when it was not scored."""

    id: str
    responses: tuple[ResponseResult, ...]
    error: GroupError | None = None


@dataclass(frozen=True)
class Stats:
    """Work done for a request. Counters and timings are summed over the chunks of a split batch."""

    coalitions: int = 0
    unique_queries: int = 0
    cache_hits: int = 0
    encoded: int = 0
    timings_ms: Mapping[str, float] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelInfo:
    retriever: str
    encoder: str
    index_version: str


@dataclass(frozen=True)
class AttributeResult:
    """The answer of ``POST /attribute``, groups in request order."""

    groups: tuple[GroupResult, ...]
    stats: Stats
    model: ModelInfo
    clip_bound: float | None = None  # set only when the service clipped

    @property
    def responses(self) -> tuple[ResponseResult, ...]:
        """Every response of every group, flattened in request order."""
        return tuple(response for group in self.groups for response in group.responses)


@dataclass(frozen=True)
class RewardResult:
    """The answer of ``POST /reward`` (OpenRLHF's remote reward model protocol)."""

    rewards: tuple[float, ...]
    scores: tuple[float, ...]
    extra_logs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RetrieverInfo:
    name: str
    encoder: str
    dim: int
    index: str
    size: int
    version: str


@dataclass(frozen=True)
class SearchHit:
    id: str
    title: str
    score: float


@dataclass(frozen=True)
class Readiness:
    """``GET /readyz``: ``ready`` is true only on a 200 answer."""

    ready: bool
    status: str
    cache_backend: str | None = None
    cache_degraded: bool | None = None
