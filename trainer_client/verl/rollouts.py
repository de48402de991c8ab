"""verl's stored trajectories -> the adapter core's rollouts, and the step's hand-off to the
``ospo`` estimator. torch only; no verl import.

A trajectory in TransferQueue (one per key ``{uid}_{session}_{index}``) holds the agent
loop's output (``prompts``, ``responses``, ``response_mask``, ``rm_scores``: zeros with the
scalar reward on the last token) plus the whole dataset row (``uid``, ``reward_model``,
``extra_info``, ...). A row's trained tokens are its ``responses`` at its ``response_mask``
(:func:`response_tokens`); those are the tokens decoded for the service and the positions
that receive its token advantages, in order.
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .._adapter_types import AdapterError, Rollout, StepResult

__all__ = ["Pending", "PENDING", "response_tokens", "rollouts_from_batch", "session_keys"]


@dataclass(frozen=True)
class Pending:
    """A step's OSPO result, waiting for verl's advantage step to reach the estimator."""

    uids: list[str]
    result: StepResult


PENDING: contextvars.ContextVar[Pending | None] = contextvars.ContextVar(
    "ospo_pending", default=None
)
"""Set by the OSPO trainer around verl's ``_compute_advantage``; read by the estimator."""


def rows_of(value: Any) -> list[Any]:
    """Per-row values of a TransferQueue field: a jagged nested tensor's rows, a dense
    tensor's rows, or a ``NonTensorStack``'s items."""
    import torch

    if isinstance(value, torch.Tensor):
        return list(value.unbind()) if value.is_nested else list(value)
    if hasattr(value, "tolist"):
        return list(value.tolist())  # NonTensorStack
    return list(value)


def response_tokens(responses: Sequence[Any], masks: Sequence[Any]) -> list[tuple[int, ...]]:
    """Each row's trained tokens: its response ids where its ``response_mask`` is 1."""
    return [
        tuple(int(t) for t in ids[mask.bool()].tolist())
        for ids, mask in zip(responses, masks, strict=True)
    ]


def session_keys(keys: Sequence[str]) -> list[tuple[str, str, int]]:
    """``(uid, session, index)`` of each TransferQueue key ``{uid}_{session}_{index}``."""
    parsed = []
    for key in keys:
        parts = key.rsplit("_", 2)
        if len(parts) != 3 or not parts[2].isdigit():
            raise AdapterError(f"unexpected TransferQueue key {key!r} (want uid_session_index)")
        parsed.append((parts[0], parts[1], int(parts[2])))
    return parsed


def label_of(row: Mapping[str, Any], path: Sequence[str]) -> Any:
    """The value at ``path`` (``("reward_model", "ground_truth")``) of a dataset row."""
    value: Any = row
    for i, part in enumerate(path):
        if not isinstance(value, Mapping) or part not in value:
            where = ".".join(path[: i + 1])
            raise AdapterError(
                f"no {where!r} in the dataset row: set +algorithm.ospo.label_field to where "
                "each prompt's label lives (default reward_model.ground_truth)"
            )
        value = value[part]
    return value


def rollouts_from_batch(
    data: Mapping[str, Any],
    keys: Sequence[str],
    tokenizer: Any,
    label_field: Sequence[str],
) -> tuple[list[Rollout], list[str]]:
    """The step's rollouts (one per key, in order, grouped by ``uid``) and their uids.

    ``data`` is what ``kv_batch_get`` returned for ``keys`` with the fields ``uid``,
    ``prompts``, ``responses``, ``response_mask``, ``rm_scores`` and ``label_field[0]``.
    """
    for name in ("uid", "prompts", "responses", "response_mask", "rm_scores", label_field[0]):
        if name not in data:
            raise AdapterError(
                f"TransferQueue holds no {name!r} for this batch"
                + (" (set +algorithm.ospo.label_field)" if name == label_field[0] else "")
            )
    later = [key for key, (_, _, index) in zip(keys, session_keys(keys), strict=True) if index]
    if later:
        raise AdapterError(
            f"agent loops returning several outputs per session are not supported "
            f"(key {later[0]!r}): OSPO credits one generated response per sample"
        )
    uids = [str(u) for u in rows_of(data["uid"])]
    labels = [label_of({label_field[0]: v}, label_field) for v in rows_of(data[label_field[0]])]
    ids = response_tokens(rows_of(data["responses"]), rows_of(data["response_mask"]))
    rewards = [float(s.sum()) for s in rows_of(data["rm_scores"])]
    prompts = [
        str(tokenizer.decode(p.tolist(), skip_special_tokens=False))
        for p in rows_of(data["prompts"])
    ]
    rollouts = [
        Rollout.from_token_ids(
            tokenizer, row_ids, group=uid, label=label, prompt=prompt, reward=reward
        )
        for row_ids, uid, label, prompt, reward in zip(
            ids, uids, labels, prompts, rewards, strict=True
        )
    ]
    return rollouts, uids
