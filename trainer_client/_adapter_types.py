"""Values of the adapter core (``trainer_client.adapter``): settings, the failure policy,
rollouts in, results out, and the one tensor helper. No I/O; torch only inside
:func:`scatter_advantages`."""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import httpx

from ._client import DEFAULT_MAX_GROUPS_PER_REQUEST, AttributionClient
from ._retry import RetryPolicy
from ._types import AttributeResult, Group, GroupError, Options
from .offsets import token_offsets

__all__ = [
    "AdapterError",
    "AdapterSettings",
    "Attributor",
    "FailurePolicy",
    "Rollout",
    "RowResult",
    "StepResult",
    "TooManyFallbacks",
    "scatter_advantages",
]

Span = tuple[int, int]
OnFailure = Literal["fallback", "fail"]
Outcome = Literal["ospo", "partial", "fallback"]


class AdapterError(RuntimeError):
    """An adapter cannot go on: a configuration or data error it can see itself."""


class TooManyFallbacks(AdapterError):
    """More consecutive fallback steps than ``FailurePolicy.max_consecutive_fallbacks``."""


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class FailurePolicy:
    """What a step does when the service fails (the table in the module docstring).

    ``on_failure``: after ``retry_budget_s`` of retries, ``"fallback"`` keeps the trainer's
    own advantages for the step, ``"fail"`` raises. ``timeout_s`` bounds one attempt (cut to
    the time left of the budget); ``max_retries`` optionally caps the number of retries
    (``None``: only the budget counts). ``max_consecutive_fallbacks``: a run stops with
    :class:`TooManyFallbacks` after more fallback steps than this in a row.
    """

    on_failure: OnFailure = "fallback"
    retry_budget_s: float = 600.0
    timeout_s: float = 180.0
    max_retries: int | None = None
    max_consecutive_fallbacks: int = 3

    def __post_init__(self) -> None:
        if self.on_failure not in ("fallback", "fail"):
            raise AdapterError(f"on_failure must be fallback or fail, not {self.on_failure!r}")
        if not self.retry_budget_s > 0 or not self.timeout_s > 0:
            raise AdapterError("retry_budget_s and timeout_s must be > 0")
        if self.max_retries is not None and self.max_retries < 0:
            raise AdapterError("max_retries must be >= 0")
        if self.max_consecutive_fallbacks < 0:
            raise AdapterError("max_consecutive_fallbacks must be >= 0")

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(max_retries=self.max_retries, max_elapsed_s=self.retry_budget_s)


@dataclass(frozen=True)
class AdapterSettings:
    """How an adapter calls the service.

    ``options`` are the request options (retriever, k, estimator, redistribution, baseline,
    ...); the adapter overrides ``errors``, ``seed`` and ``clip`` in every request. ``seed``
    is the base seed (step ``s`` sends ``seed + s``); ``clip`` clips over the whole step
    (``None``: no clipping). ``reward_model`` names a reward model configured in the service
    as every group's target (the label is then passed to it; ``None``: targets come from the
    labels). ``send_reward`` sends the trainer's scalar rewards so the service's group
    advantage matches the trainer's (else the service computes the retrieval NDCG).
    """

    url: str | Sequence[str] = ""
    api_key: str | None = None
    options: Options = field(default_factory=Options)
    seed: int = 0
    clip: float | None = None
    reward_model: str | None = None
    send_reward: bool = True
    failure: FailurePolicy = field(default_factory=FailurePolicy)
    max_groups_per_request: int = DEFAULT_MAX_GROUPS_PER_REQUEST
    max_concurrency: int = 4

    def __post_init__(self) -> None:
        if self.clip is not None and not self.clip > 0:
            raise AdapterError(f"clip must be > 0 or none, not {self.clip}")

    def client(self) -> AttributionClient:
        """A client that retries for the failure policy's budget."""
        if not self.url:
            raise AdapterError("no service URL: set OSPO_ATTRIBUTE_URL or --ospo.url")
        return AttributionClient(
            self.url,
            api_key=self.api_key,
            timeout=httpx.Timeout(
                self.failure.timeout_s, connect=min(10.0, self.failure.timeout_s)
            ),
            retry=self.failure.retry_policy(),
            max_groups_per_request=self.max_groups_per_request,
            max_concurrency=self.max_concurrency,
        )


# --------------------------------------------------------------------------- inputs and results


@dataclass(frozen=True)
class Rollout:
    """One sampled response: its decoded ``text`` and its tokens' character spans in it (one
    per token the trainer trains on), the GRPO ``group`` it belongs to, the group's ``label``
    (str or JSON object) and ``prompt``, and the trainer's scalar ``reward``."""

    group: Hashable
    label: Any
    text: str
    token_offsets: tuple[Span, ...]
    prompt: str = ""
    reward: float | None = None

    @classmethod
    def from_token_ids(
        cls,
        tokenizer: Any,
        token_ids: Sequence[int],
        *,
        group: Hashable,
        label: Any,
        prompt: str = "",
        reward: float | None = None,
    ) -> Rollout:
        """A rollout from the trainer's sampled token ids (special tokens get empty spans)."""
        offsets = token_offsets(tokenizer, token_ids)
        return cls(group, label, offsets.text, offsets.offsets, prompt, reward)


@dataclass(frozen=True)
class RowResult:
    """One rollout's outcome. ``token_advantages`` is aligned with its ``token_offsets``, or
    ``None`` when the row falls back (keep the trainer's own advantages); ``error`` says why
    its group was not scored (``None`` for a scored row or a step-wide fallback)."""

    token_advantages: tuple[float, ...] | None
    reward: float = 0.0
    advantage: float = 0.0
    segments: int = 0
    redistributed: bool = False
    error: GroupError | None = None

    @property
    def fallback(self) -> bool:
        return self.token_advantages is None


@dataclass(frozen=True)
class StepResult:
    """A step's rows (in rollout order), outcome and metrics.

    ``outcome``: ``"ospo"`` (every group scored), ``"partial"`` (some groups fell back) or
    ``"fallback"`` (none scored; ``reason`` says why). ``metrics`` are step scalars to log:
    ``ospo/fallback_groups``, ``ospo/groups``, ``ospo/fallback_step`` (0/1),
    ``ospo/service_ms`` (wall time of the service call, retries included),
    ``ospo/mean_abs_adv`` (mean |token advantage| over the scored rows' tokens) and, when
    clipping, ``ospo/clip_bound``.
    """

    rows: tuple[RowResult, ...]
    outcome: Outcome
    step: int
    metrics: Mapping[str, float]
    errors: Mapping[Hashable, GroupError] = field(default_factory=dict)
    reason: str | None = None

    def slice(self, start: int, stop: int) -> StepResult:
        """The rows ``start:stop`` (one rank's or one micro-batch's share), same metrics."""
        return dataclasses.replace(self, rows=self.rows[start:stop])

    def row_info(self) -> dict[str, list[float]]:
        """Per-row columns for a trainer's per-sample logs (``ospo_reward``,
        ``ospo_advantage``, ``ospo_segments``, ``ospo_fallback``)."""
        return {
            "ospo_reward": [r.reward for r in self.rows],
            "ospo_advantage": [r.advantage for r in self.rows],
            "ospo_segments": [float(r.segments) for r in self.rows],
            "ospo_fallback": [float(r.fallback) for r in self.rows],
        }


class Attributor(Protocol):
    """What the adapter needs of a client (:class:`~trainer_client.AttributionClient` fits)."""

    def attribute(
        self, groups: Sequence[Group], options: Options | None = None
    ) -> AttributeResult: ...


def scatter_advantages(result: StepResult, positions: Any, fallback: Any) -> Any:
    """A (B, T) tensor of the step's advantages, for adapters that hold tensors.

    ``positions`` (B, T, bool) marks each row's trained tokens in order (OpenRLHF's
    ``action_mask``; TRL's and verl's response masks); ``fallback`` (B, T) holds the
    trainer's own advantages. A scored row gets its token advantages at its positions and 0
    elsewhere; a fallback row is copied from ``fallback``. Raises :class:`AdapterError` when
    a row's position count differs from its number of token advantages.
    """
    import torch

    mask = positions.bool()
    out = torch.zeros_like(fallback)
    if len(result.rows) != mask.shape[0]:
        raise AdapterError(f"{len(result.rows)} results for {mask.shape[0]} rows")
    for i, row in enumerate(result.rows):
        if row.token_advantages is None:
            out[i] = fallback[i]
            continue
        expected = int(mask[i].sum())
        if len(row.token_advantages) != expected:
            raise AdapterError(
                f"row {i}: {len(row.token_advantages)} token advantages for {expected} tokens"
            )
        out[i][mask[i]] = torch.tensor(row.token_advantages, dtype=out.dtype, device=out.device)
    return out
