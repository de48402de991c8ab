"""The adapter core: one training step's rollouts in, per-token OSPO advantages out.

Every trainer adapter (OpenRLHF, TRL, verl) is a thin layer over :class:`OspoAdapter`: it
turns its own batch into :class:`Rollout` values, calls :meth:`OspoAdapter.step` once per
training step, and writes the returned token advantages back into its own tensors (keeping
its own advantages for the rows the result marks as fallback). Everything here is plain
Python over an :class:`~trainer_client.AttributionClient`; torch is imported only by
:func:`scatter_advantages`.

API::

    settings = AdapterSettings(url="http://ospo:8000", options=Options(baseline="group_norm"))
    adapter = OspoAdapter(settings)                 # or OspoAdapter(settings, client=...)
    rollouts = [Rollout.from_token_ids(tokenizer, ids, group=index // n, label=label,
                                       prompt=prompt, reward=reward) for ...]
    result = adapter.step(rollouts, step=global_step)
    result.rows[i].token_advantages     # tuple aligned with rollout i's tokens, or None:
                                        # keep the trainer's own advantages for that row
    result.metrics                      # {"ospo/fallback_groups", "ospo/service_ms",
                                        #  "ospo/mean_abs_adv", ...}: log them per step
    adapter.close()

What one :meth:`~OspoAdapter.step` does:

- groups the rollouts by ``group`` (rows of one group must share ``label`` and ``prompt``;
  the group order is first appearance) and builds each group's target and candidate pool
  from its label with :func:`trainer_client._labels.parse_label`, the grammar the service's
  ``/reward`` uses, so the scalar reward and the coalition values are one game (with
  ``reward_model`` set, the target is that reward model and the label is passed to it);
- calls ``POST /attribute`` once (chunked by the client when there are more groups than
  ``max_groups_per_request``) with ``options.errors = "group"``, ``options.seed = seed +
  step`` (the coalition sample changes between steps, a retried step is identical) and
  ``options.clip = None``;
- clips over the whole step when ``clip`` is set: token advantages of redistributed
  responses are clamped to ±clip·std(Â), std over every scored response of the step
  (ddof 0), so the result does not depend on how the client chunked the step;
- applies the failure policy (:class:`FailurePolicy`, docs/TRAINERS.md):

  ========================================  ===============================================
  what happened                             outcome
  ========================================  ===============================================
  refused connection, timeout, 5xx, 429     retried with backoff (honouring Retry-After) for
                                            up to ``retry_budget_s`` (600 s; each attempt's
                                            timeout is cut to the time left); then the whole
                                            step falls back (``on_failure="fallback"``) or
                                            the client error is raised (``"fail"``)
  4xx, 401 (whole request refused)          the client error is raised at once, with the
                                            service's message, whatever ``on_failure`` says
  a group the service could not score,      that group falls back (its rows keep the
  or whose label is malformed               trainer's advantages); the others use OSPO
  a fallback step (no group scored)         counted; more than ``max_consecutive_fallbacks``
                                            (3) in a row raises :class:`TooManyFallbacks`
  ========================================  ===============================================

An :class:`OspoAdapter` is meant for one training loop in one thread (it counts consecutive
fallback steps); results are frozen, picklable values that can be broadcast between ranks.

Writing an adapter (docs/TRAINERS.md has the user side):

- OpenRLHF (``trainer_client.openrlhf.core``): rollouts from ``sequences[i, 1:][action_mask[i]]``,
  ``group = index // n_samples_per_prompt``; ``scatter_advantages(result, action_mask,
  experience.advantages)``.
- TRL (``GRPOTrainer``, advantages (B, T) over completion tokens): gather every process's
  ``(completion ids, label, prompt)``; on the main process build rollouts with ``group =
  global position // num_generations`` and call ``step(rollouts,
  step=self.state.global_step, baseline=...)`` (``scale_rewards="group"`` -> ``group_norm``,
  ``"none"`` -> ``dr_grpo``); broadcast the :class:`StepResult` (or the exception: client
  errors pickle); each process takes ``result.slice(start, stop)`` and calls
  ``scatter_advantages(part, completion_mask, advantages[:, None].expand_as(completion_mask))``.
- verl (v1 ``_compute_advantage``): rollouts from the decoded responses with ``group = uid``
  and ``label = reward_model["ground_truth"]``; ``scatter_advantages(result, response_mask,
  verl's own advantages)``; ``result.metrics`` into verl's ``metrics``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ._adapter_types import (
    AdapterError,
    AdapterSettings,
    Attributor,
    FailurePolicy,
    Outcome,
    Rollout,
    RowResult,
    StepResult,
    TooManyFallbacks,
    scatter_advantages,
)
from ._client import AttributionClient
from ._exceptions import ClientRequestError, OspoClientError
from ._labels import LabelError, parse_label
from ._types import Group, GroupError, Options, Response, ResponseResult, Target

__all__ = [
    "AdapterError",
    "AdapterSettings",
    "Attributor",
    "FailurePolicy",
    "GroupError",
    "OspoAdapter",
    "Rollout",
    "RowResult",
    "StepResult",
    "TooManyFallbacks",
    "scatter_advantages",
]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- the core


@dataclass
class _Plan:
    """The step's groups: which rollouts each holds, and the groups sent to the service."""

    members: list[list[int]]  # group g -> rollout indices
    keys: list[Hashable]
    sent: list[int]  # groups that go to the service (the others have a label error)
    request: list[Group]
    errors: dict[int, GroupError]


class OspoAdapter:
    """The adapter core (see the module docstring). ``client`` defaults to
    ``settings.client()``; one passed in keeps its own retry policy."""

    def __init__(self, settings: AdapterSettings, client: Attributor | None = None) -> None:
        self.settings = settings
        self._owned = client is None
        self._client: Attributor = settings.client() if client is None else client
        self._steps = 0
        self.consecutive_fallbacks = 0

    def close(self) -> None:
        if self._owned and isinstance(self._client, AttributionClient):
            self._client.close()

    def step(
        self,
        rollouts: Sequence[Rollout],
        *,
        step: int | None = None,
        baseline: str | None = None,
    ) -> StepResult:
        """Token advantages for one training step's rollouts.

        ``step`` is the trainer's global step (default: the number of earlier calls);
        ``baseline`` overrides ``options.baseline`` (adapters map their estimator to it).
        Raises :class:`~trainer_client.ClientRequestError` (4xx, at once),
        :class:`~trainer_client.OspoClientError` (service failure under ``"fail"``),
        :class:`TooManyFallbacks`, or :class:`AdapterError` for inconsistent groups.
        """
        index = self._steps if step is None else int(step)
        self._steps += 1
        if not rollouts:
            return StepResult(rows=(), outcome="ospo", step=index, metrics=_metrics([], 0.0))
        plan = self._plan(rollouts)
        scored: dict[int, tuple[ResponseResult, ...]] = {}
        reason: str | None = None
        service_ms = 0.0
        if plan.request:
            started = time.perf_counter()
            try:
                result = self._client.attribute(plan.request, self._options(index, baseline))
            except ClientRequestError:
                raise  # a configuration error: no number of retries or steps will fix it
            except OspoClientError as exc:
                if self.settings.failure.on_failure == "fail":
                    raise
                reason = f"the OSPO service failed ({type(exc).__name__}): {exc}"
            else:
                for g, group_result in zip(plan.sent, result.groups, strict=True):
                    if group_result.error is not None:
                        plan.errors[g] = group_result.error
                    else:
                        scored[g] = group_result.responses
            service_ms = 1000.0 * (time.perf_counter() - started)
        if reason is None and not scored:
            reason = "no group could be scored: " + _summary(plan.errors.values())
        rows = self._rows(rollouts, plan, scored)
        rows, bound = self._clip(rows)
        outcome: Outcome = (
            "fallback" if not scored else "partial" if len(scored) < len(plan.keys) else "ospo"
        )
        metrics = _metrics(rows, service_ms, groups=len(plan.keys), scored=len(scored))
        if bound is not None:
            metrics["ospo/clip_bound"] = bound
        errors = {plan.keys[g]: error for g, error in plan.errors.items()}
        self._count(outcome, reason, errors, index)
        return StepResult(
            rows=tuple(rows),
            outcome=outcome,
            step=index,
            metrics=metrics,
            errors=errors,
            reason=reason if outcome == "fallback" else None,
        )

    # ------------------------------------------------------------------ helpers

    def _options(self, step: int, baseline: str | None) -> Options:
        options = self.settings.options
        return replace(
            options,
            errors="group",
            seed=self.settings.seed + step,
            clip=None,
            baseline=baseline if baseline is not None else options.baseline,
        )

    def _plan(self, rollouts: Sequence[Rollout]) -> _Plan:
        order: dict[Hashable, int] = {}
        members: list[list[int]] = []
        for i, rollout in enumerate(rollouts):
            g = order.setdefault(rollout.group, len(members))
            if g == len(members):
                members.append([])
            first = rollouts[members[g][0]] if members[g] else rollout
            if first.label != rollout.label or first.prompt != rollout.prompt:
                raise AdapterError(
                    f"rows of group {rollout.group!r} disagree on prompt or label; "
                    "is the group size (n_samples_per_prompt / num_generations) right?"
                )
            members[g].append(i)
        keys = list(order)
        plan = _Plan(members=members, keys=keys, sent=[], request=[], errors={})
        for g, indices in enumerate(members):
            first = rollouts[indices[0]]
            try:
                target, pool = self._target(first.label, f"labels[{indices[0]}]")
            except LabelError as exc:
                plan.errors[g] = GroupError("invalid_label", exc.message, exc.field)
                continue
            send_reward = self.settings.send_reward
            plan.sent.append(g)
            plan.request.append(
                Group(
                    id=f"{g}:{keys[g]}"[:200],  # unique even if two keys print alike
                    target=target,
                    pool=pool,
                    prompt=first.prompt if self.settings.reward_model is not None else None,
                    responses=[
                        Response(
                            text=rollouts[i].text,
                            token_offsets=rollouts[i].token_offsets,
                            reward=rollouts[i].reward if send_reward else None,
                        )
                        for i in indices
                    ],
                )
            )
        return plan

    def _target(self, label: Any, where: str) -> tuple[Target, tuple[str, ...] | None]:
        if self.settings.reward_model is not None:
            text = None if label is None else label if isinstance(label, str) else json.dumps(label)
            return Target(reward_model=self.settings.reward_model, label=text), None
        parsed = parse_label(label, where)
        if parsed.query_id is not None:
            return Target(query_id=parsed.query_id), parsed.pool
        return Target(relevant=parsed.relevant), parsed.pool

    @staticmethod
    def _rows(
        rollouts: Sequence[Rollout], plan: _Plan, scored: Mapping[int, Sequence[ResponseResult]]
    ) -> list[RowResult]:
        rows: list[RowResult | None] = [None] * len(rollouts)
        for g, indices in enumerate(plan.members):
            answers = scored.get(g)
            for j, i in enumerate(indices):
                if answers is None:
                    rows[i] = RowResult(token_advantages=None, error=plan.errors.get(g))
                    continue
                answer = answers[j]
                if answer.token_advantages is None:
                    raise AdapterError("the service returned no token_advantages")
                rows[i] = RowResult(
                    token_advantages=answer.token_advantages,
                    reward=answer.reward,
                    advantage=answer.advantage,
                    segments=len(answer.segments),
                    # Unknown (an older service): treat as redistributed, as it clipped all.
                    redistributed=answer.redistributed is not False,
                )
        return [row for row in rows if row is not None]

    def _clip(self, rows: list[RowResult]) -> tuple[list[RowResult], float | None]:
        clip = self.settings.clip
        scored = [row for row in rows if not row.fallback]
        if clip is None or not scored:
            return rows, None
        advantages = [row.advantage for row in scored]
        mean = sum(advantages) / len(advantages)
        std = math.sqrt(sum((a - mean) ** 2 for a in advantages) / len(advantages))
        bound = clip * std
        clipped = [
            replace(
                row,
                token_advantages=tuple(min(max(a, -bound), bound) for a in row.token_advantages),
            )
            if row.token_advantages is not None and row.redistributed
            else row
            for row in rows
        ]
        return clipped, bound

    def _count(
        self, outcome: Outcome, reason: str | None, errors: Mapping[Hashable, GroupError], step: int
    ) -> None:
        limit = self.settings.failure.max_consecutive_fallbacks
        if outcome != "fallback":
            if errors:
                logger.warning(
                    "OSPO step %d: %d group(s) keep the trainer's advantages: %s",
                    step,
                    len(errors),
                    _summary(errors.values()),
                )
            self.consecutive_fallbacks = 0
            return
        self.consecutive_fallbacks += 1
        if self.consecutive_fallbacks > limit:
            raise TooManyFallbacks(
                f"{self.consecutive_fallbacks} consecutive training steps without OSPO "
                f"advantages (more than max_consecutive_fallbacks={limit}); the run would "
                f"silently train plain GRPO. Last reason: {reason}"
            )
        logger.warning(
            "OSPO step %d falls back to the trainer's advantages (%d in a row, %d allowed): %s",
            step,
            self.consecutive_fallbacks,
            limit,
            reason,
        )


def _summary(found: Iterable[GroupError]) -> str:
    errors = list(found)
    if not errors:
        return "no groups"
    counts = Counter(error.code for error in errors)
    first = errors[0]
    where = f" ({first.field})" if first.field else ""
    listed = ", ".join(f"{code} x{n}" for code, n in counts.most_common())
    return f"{listed}; first: {first.message}{where}"


def _metrics(
    rows: Sequence[RowResult], service_ms: float, *, groups: int = 0, scored: int = 0
) -> dict[str, float]:
    values = [abs(a) for row in rows if row.token_advantages for a in row.token_advantages]
    return {
        "ospo/groups": float(groups),
        "ospo/fallback_groups": float(groups - scored),
        "ospo/fallback_step": float(groups > 0 and scored == 0),
        "ospo/service_ms": service_ms,
        "ospo/mean_abs_adv": sum(values) / len(values) if values else 0.0,
    }
