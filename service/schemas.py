"""Request and response models of the HTTP contract (docs/API.md). Structure only: the
configurable limits are checked in `service.engine.limits`, the logic lives in the engine."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Offset = tuple[Annotated[int, Field(ge=0)], Annotated[int, Field(ge=0)]]

Segmenter = Literal["phrase", "sentence", "word"]
Estimator = Literal["owen", "owen-sum", "myerson", "shapley"]
Redistribution = Literal["prop", "rank", "uniform"]
Baseline = Literal["group_norm", "dr_grpo", "rloo"]
Sampler = Literal["contiguous", "random"]
Outside = Literal["advantage", "zero"]
Credit = Literal["positive", "minmax"]
Negative = Literal["same", "inverse"]
ErrorScope = Literal["request", "group"]
# A tag name as extract_query accepts it (letters, digits, "_" and "-"; not "think").
QueryTag = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")]


def _omitted_when_none(value: object) -> bool:
    return value is None


# Optional response fields that are left out of the JSON when absent; fields without this
# marker (a segment's `value`) are written as null.
Omitted = Field(default=None, exclude_if=_omitted_when_none)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


ProductId = Annotated[str, Field(min_length=1, max_length=256)]
# Gains enter DCG as 2^gain - 1: the bound keeps that finite (ESCI/WANDS gains are <= 3).
MAX_GAIN = 100.0
Gain = Annotated[float, Field(gt=0, le=MAX_GAIN, allow_inf_nan=False)]


class Target(_Model):
    """Exactly one of: `query_id` (labels the service holds for a catalog query),
    `relevant` (explicit graded labels, product id -> gain > 0) or `reward_model` (the name
    of a configured reward model scoring the group's prompt + partial responses). `label`
    goes with `reward_model` only: it is sent as OpenRLHF's `labels[i]` to a remote model."""

    query_id: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    relevant: dict[ProductId, Gain] | None = None
    reward_model: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    label: Annotated[str, Field(max_length=8000)] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Target:
        given = [self.query_id, self.relevant, self.reward_model]
        if sum(value is not None for value in given) != 1:
            raise ValueError("target needs exactly one of 'query_id', 'relevant' or 'reward_model'")
        if self.label is not None and self.reward_model is None:
            raise ValueError("target.label goes with 'reward_model' only")
        return self


class ResponseIn(_Model):
    text: str
    span: Offset | None = None
    token_offsets: list[Offset] | None = None
    reward: FiniteFloat | None = None


class GroupIn(_Model):
    id: str | None = None
    target: Target
    pool: list[ProductId] | None = None
    # The text before every response; required with a reward_model target ("" for none),
    # ignored by retrieval targets.
    prompt: str | None = None
    responses: list[ResponseIn]


class Options(_Model):
    retriever: str = "default"
    k: int = 1000
    # Left unset, reward_model targets segment by "sentence" (the engine reads
    # model_fields_set, so an explicit "phrase" stays "phrase").
    segmenter: Segmenter = "phrase"
    max_width: int = 8
    max_coalitions: int = 96
    estimator: Estimator = "owen"
    redistribution: Redistribution = "prop"
    baseline: Baseline = "group_norm"
    clip: FiniteFloat | None = None
    seed: int = 0
    cache: bool = True
    explain: bool = False
    # Extensions (docs/API.md): `sampler: random` draws random (non-contiguous) subsets for the
    # `owen` estimator (the ablation); `outside: zero` gives tokens outside the query 0 and lets
    # the query tokens carry T·Â instead of every outside token keeping Â.
    sampler: Sampler = "contiguous"
    outside: Outside = "advantage"
    credit: Credit = "positive"
    negative: Negative = "same"
    query_tag: QueryTag = "answer"
    errors: ErrorScope = "request"
    depth: int = 1000


class AttributeRequest(_Model):
    groups: list[GroupIn]
    options: Options = Field(default_factory=Options)


class SegmentOut(BaseModel):
    start: int
    end: int
    text: str
    # null: unmeasured (the plan evaluated no coalition pair for this segment).
    value: float | None
    credit: float


class CoalitionOut(BaseModel):
    members: list[int]
    query: str
    value: float


class ResponseOut(BaseModel):
    reward: float
    advantage: float
    segments: list[SegmentOut]
    # Whether the token advantages were spread by segment credit (false: every token got Â).
    redistributed: bool = False
    token_advantages: list[float] | None = Omitted
    coalitions: list[CoalitionOut] | None = Omitted


class ErrorBody(BaseModel):
    code: str
    message: str
    field: str | None = None


class GroupOut(BaseModel):
    id: str | None = Omitted
    responses: list[ResponseOut]
    # With options.errors = "group": why this group was not scored (responses is empty).
    error: ErrorBody | None = Omitted


class Timings(BaseModel):
    segment: float = 0.0
    cache: float = 0.0
    encode: float = 0.0
    search: float = 0.0
    score: float = 0.0
    attribute: float = 0.0
    total: float = 0.0


class Stats(BaseModel):
    coalitions: int
    unique_queries: int
    cache_hits: int
    encoded: int
    timings_ms: Timings
    group_errors: int = 0


class RewardModelInfo(BaseModel):
    name: str
    backend: str
    version: str


class ModelInfo(BaseModel):
    # Empty strings when no group of the request used a retriever.
    retriever: str
    encoder: str
    index_version: str
    reward_models: list[RewardModelInfo] | None = Omitted


class AttributeResponse(BaseModel):
    groups: list[GroupOut]
    stats: Stats
    model: ModelInfo
    # The bound token advantages were clipped to (options.clip x std of the request's Â);
    # present only when clipping was asked for.
    clip_bound: float | None = Omitted


class RewardRequest(BaseModel):
    """OpenRLHF's remote reward-model request; unknown keys are ignored as OpenRLHF may add some."""

    model_config = ConfigDict(extra="ignore")

    query: list[str]
    prompts: list[str] | None = None
    labels: list[str | dict[str, Any] | None] | None = None


class RewardResponse(BaseModel):
    rewards: list[float]
    scores: list[float]
    extra_logs: dict[str, list[float]]


class RetrieverInfo(BaseModel):
    name: str
    encoder: str
    dim: int
    index: str
    size: int
    version: str
    catalog: str | None = None
    backend: str = "torch"  # torch | onnx | onnx-int8 | remote | bm25


class RetrieversResponse(BaseModel):
    retrievers: list[RetrieverInfo]


class SearchHit(BaseModel):
    id: str
    title: str
    score: float


class SearchResponse(BaseModel):
    results: list[SearchHit]


class DemoQuery(BaseModel):
    id: str
    text: str
    examples: list[str]
    """Responses to try: for demo catalog queries, from a precise search query to a vague one."""


class DemoQueriesResponse(BaseModel):
    retriever: str
    catalog: str
    total: int
    queries: list[DemoQuery]


class CacheStatus(BaseModel):
    backend: str
    degraded: bool


class ReadyResponse(BaseModel):
    status: Literal["ready", "loading", "failed"]
    cache: CacheStatus | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


__all__ = [
    "AttributeRequest",
    "AttributeResponse",
    "CacheStatus",
    "CoalitionOut",
    "DemoQueriesResponse",
    "DemoQuery",
    "ErrorBody",
    "ErrorResponse",
    "GroupIn",
    "GroupOut",
    "ModelInfo",
    "Options",
    "ReadyResponse",
    "ResponseIn",
    "ResponseOut",
    "RetrieverInfo",
    "RetrieversResponse",
    "RewardModelInfo",
    "RewardRequest",
    "RewardResponse",
    "SearchHit",
    "SearchResponse",
    "SegmentOut",
    "Stats",
    "Target",
    "Timings",
]
