"""OpenRLHF experiences <-> the adapter core: the one assembly path of the plug-in.

:func:`assign_advantages` is what the patched ``compute_advantages_and_returns`` runs after
OpenRLHF's own group estimator, and what the tests run: for each row it takes the response
tokens at the ``action_mask`` positions (``sequences[i, 1:][action_mask[i]]``: the mask is
shifted by one for next-token prediction), decodes them with their character offsets, groups
rows by prompt (``index // n_samples_per_prompt``), asks :class:`~trainer_client.adapter.OspoAdapter`
for one step, and writes the token advantages back exactly at the ``action_mask`` positions
(prompt and padding stay 0; a fallback row keeps OpenRLHF's advantages; ``returns`` gets the
same values, unused without a critic). Per-row and per-step figures go to ``experience.info``.

Experiences are duck-typed (``sequences``, ``action_mask``, ``prompts``, ``labels``,
``index``, ``rewards``, ``advantages``, ``info``), so this module never imports openrlhf;
torch is imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from types import SimpleNamespace
from typing import Any

from .._adapter_types import (
    AdapterError,
    AdapterSettings,
    Attributor,
    FailurePolicy,
    Rollout,
    StepResult,
    scatter_advantages,
)
from .._types import Options
from ..adapter import OspoAdapter

__all__ = [
    "assign_advantages",
    "group_keys",
    "ospo_token_advantages",
    "response_ids",
    "scatter_token_values",
]


def response_ids(sequences: Any, action_mask: Any) -> list[tuple[int, ...]]:
    """Token ids at the action positions of every row: ``sequences[i, 1:][action_mask[i]]``."""
    width = action_mask.shape[1]
    shifted = sequences[:, 1 : 1 + width]
    mask = action_mask.bool()
    return [tuple(int(t) for t in shifted[i][mask[i]].tolist()) for i in range(mask.shape[0])]


def group_keys(experiences: Sequence[Any], n_samples: int) -> list[list[Hashable]]:
    """Each row's GRPO group: its rollout index // ``n_samples`` (OpenRLHF's order), or its
    prompt when the experience carries no index."""
    keys: list[list[Hashable]] = []
    for experience in experiences:
        index = experience.index
        if index is None:
            keys.append(list(experience.prompts))
        else:
            keys.append([int(i) // n_samples for i in index])
    return keys


def assign_advantages(
    experiences: Sequence[Any],
    tokenizer: Any,
    adapter: OspoAdapter,
    *,
    groups: Sequence[Sequence[Hashable]],
    step: int | None = None,
    baseline: str | None = None,
) -> StepResult:
    """Replace every experience's ``advantages`` (and ``returns``) with OSPO's, in place."""
    import torch

    rollouts: list[Rollout] = []
    spans: list[tuple[int, int]] = []
    for experience, keys in zip(experiences, groups, strict=True):
        ids = response_ids(experience.sequences, experience.action_mask)
        rewards = experience.rewards
        start = len(rollouts)
        for i, row_ids in enumerate(ids):
            rollouts.append(
                Rollout.from_token_ids(
                    tokenizer,
                    row_ids,
                    group=keys[i],
                    label=experience.labels[i],
                    prompt=experience.prompts[i],
                    reward=None if rewards is None else float(rewards[i]),
                )
            )
        spans.append((start, len(rollouts)))

    result = adapter.step(rollouts, step=step, baseline=baseline)
    columns = result.row_info()
    for experience, (start, stop) in zip(experiences, spans, strict=True):
        part = result.slice(start, stop)
        advantages = scatter_advantages(part, experience.action_mask, experience.advantages)
        experience.advantages = advantages
        experience.returns = advantages.clone()
        rows = stop - start

        def column(values: Sequence[float], device: Any = advantages.device) -> Any:
            return torch.tensor(list(values), dtype=torch.float32, device=device)

        for key, values in columns.items():
            experience.info[key] = column(values[start:stop])
        for key, value in result.metrics.items():
            experience.info[key] = column([value] * rows)
    return result


def scatter_token_values(action_mask: Any, values: Sequence[Sequence[float]], like: Any) -> Any:
    """A tensor shaped like ``like`` with row ``i``'s values at its action positions, else 0."""
    import torch

    from .._adapter_types import RowResult

    rows = tuple(RowResult(token_advantages=tuple(v)) for v in values)
    result = StepResult(rows=rows, outcome="ospo", step=0, metrics={})
    return scatter_advantages(result, action_mask, torch.zeros_like(like))


def ospo_token_advantages(
    sequences: Any,
    action_mask: Any,
    prompts: Sequence[str],
    labels: Sequence[Any],
    tokenizer: Any,
    scalar_advantages: Any,
    *,
    client: Attributor,
    options: Options | None = None,
    groups: Sequence[Hashable] | None = None,
    rewards: Sequence[float] | None = None,
    on_failure: str = "fail",
) -> tuple[Any, dict[str, Any]]:
    """Per-token OSPO advantages (B, A) for one right-padded batch, and per-sample info,
    through :func:`assign_advantages` (the patched method's path) on a one-batch step.

    ``scalar_advantages`` (B,) are the trainer's advantages, kept over the action positions
    of a row that falls back. ``groups`` gives each row's group (default: its prompt).
    """
    import torch

    if on_failure not in ("fail", "fallback"):
        raise AdapterError(f"on_failure must be fail or fallback, not {on_failure!r}")
    mask = action_mask.bool()
    own = scalar_advantages.reshape(-1, 1).to(torch.float32) * mask.to(torch.float32)
    batch = SimpleNamespace(
        sequences=sequences,
        action_mask=action_mask,
        prompts=list(prompts),
        labels=list(labels),
        index=None,
        rewards=None
        if rewards is None
        else torch.tensor([float(r) for r in rewards], dtype=torch.float64),
        advantages=own,
        returns=None,
        info={},
    )
    settings = AdapterSettings(
        url="",
        options=options or Options(),
        failure=FailurePolicy(on_failure="fail" if on_failure == "fail" else "fallback"),
    )
    keys = [list(groups) if groups is not None else list(prompts)]
    assign_advantages([batch], tokenizer, OspoAdapter(settings, client=client), groups=keys)
    return batch.advantages, batch.info
