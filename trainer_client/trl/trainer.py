"""``OspoGRPOTrainer``: TRL 1.16's ``GRPOTrainer`` training on OSPO's per-token advantages.

TRL has no advantage hook; its maintainers' advice is to subclass and override
``_generate_and_score_completions``, whose output ``"advantages"`` may be (B, T): the loss
(``_compute_loss``) multiplies it elementwise with the per-token ratios. This subclass:

1. lets TRL generate, score (its reward functions) and compute its own group advantages;
2. remembers, from ``_calculate_rewards``, each local completion's length, its dataset label
   (``label_column``) and the rewards gathered over every process;
3. reads each completion's tokens at the positions that will receive advantages (the first
   ``len`` positions of the right-padded ``completion_ids``: :func:`completion_tokens`),
   gathers ``(ids, label, prompt)`` from every process (groups straddle processes: the
   sampler repeats a prompt ``num_generations`` times over the global batch), and on the main
   process asks the adapter core for one step (``group = global position // num_generations``,
   seed ``seed + global_step``); the result, or the failure, is broadcast to every process;
4. writes each local row's token advantages at those positions, keeps TRL's scalar advantage
   over the row for a group that fell back, gives an unscorable completion (every reward
   function returned ``None``) 0 as TRL does, and multiplies by ``completion_mask`` (so
   ``mask_truncated_completions`` still holds).

Evaluation keeps TRL's own advantages (the service is asked only while training). Step
metrics (``ospo/*``) go to TRL's ``_metrics["train"]``; ``_logs["advantages"]`` (the
completions table) still shows TRL's scalar advantage.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import trl
from accelerate.utils import broadcast_object_list, gather_object
from trl import GRPOTrainer

from .._adapter_types import (
    AdapterError,
    AdapterSettings,
    Attributor,
    Rollout,
    RowResult,
    StepResult,
    scatter_advantages,
)
from ..adapter import OspoAdapter
from .reward import OspoReward

__all__ = [
    "SUPPORTED_TRL",
    "OspoGRPOTrainer",
    "check_trl_version",
    "completion_tokens",
    "refusals",
]

logger = logging.getLogger(__name__)

SUPPORTED_TRL = "1.16"
"""Major.minor of the TRL releases whose ``GRPOTrainer`` internals this subclass relies on."""
BASELINES = {"group": "group_norm", "none": "dr_grpo"}
"""TRL's ``scale_rewards`` -> the service's ``options.baseline`` (same group statistics)."""


def check_trl_version(version: str | None = None) -> str:
    """The installed TRL version, or :class:`AdapterError` unless it is 1.16.x."""
    version = trl.__version__ if version is None else version
    if ".".join(version.split(".")[:2]) != SUPPORTED_TRL:
        raise AdapterError(
            f"trl {version} is installed; OspoGRPOTrainer overrides GRPOTrainer internals "
            f"tested only on {SUPPORTED_TRL}.x (pip install 'trl=={SUPPORTED_TRL}.0')"
        )
    return version


def refusals(trainer: Any, settings: AdapterSettings, label_column: str) -> list[str]:
    """One line per setting of a built ``GRPOTrainer`` that OSPO advantages cannot honour."""
    found: list[str] = []
    if trainer.scale_rewards not in BASELINES:
        found.append(
            f"scale_rewards={trainer.scale_rewards!r} is refused: the service normalises each "
            "group on its own (use 'group' for GRPO or 'none' for Dr. GRPO)"
        )
    if trainer.multi_objective_aggregation != "sum_then_normalize":
        found.append(
            f"multi_objective_aggregation={trainer.multi_objective_aggregation!r} is refused: "
            "the service takes one scalar reward per completion (use 'sum_then_normalize')"
        )
    if trainer.importance_sampling_level != "token":
        found.append(
            "importance_sampling_level='sequence' (GSPO) is refused: its sequence-level ratio "
            "weights every token by the mean token advantage (Â), which cancels OSPO's "
            "redistribution; use 'token'"
        )
    if trainer.tools or trainer.environment_factories is not None:
        found.append(
            "tools and environments are refused: a multi-turn completion mixes tool output "
            "into the completion tokens, and OSPO credits one generated query"
        )
    columns = getattr(trainer.train_dataset, "column_names", None)
    if settings.reward_model is None and columns is not None and label_column not in columns:
        found.append(
            f"the training dataset has no {label_column!r} column (columns: "
            f"{', '.join(columns)}): each prompt's label (a catalog query id or graded labels) "
            "is the target OSPO scores against; pass label_column=..."
        )
    return found


def completion_tokens(completion_ids: Any, lengths: Sequence[int]) -> list[tuple[int, ...]]:
    """Each row's tokens at the positions that receive advantages: the first ``lengths[i]``
    positions of the right-padded ``completion_ids`` (B, T)."""
    return [tuple(int(t) for t in completion_ids[i, :n].tolist()) for i, n in enumerate(lengths)]


def _positions(lengths: Sequence[int], width: int, device: Any) -> Any:
    span = torch.arange(width, device=device).unsqueeze(0)
    return span < torch.tensor(list(lengths), device=device).unsqueeze(1)


@dataclass(frozen=True)
class _Pending:
    """What ``_calculate_rewards`` saw: local lengths and labels, gathered rewards."""

    lengths: list[int]
    labels: list[Any]
    rewards_per_func: Any


@dataclass(frozen=True)
class _Failure:
    """A failure of the main process, as broadcast to the others."""

    kind: str
    message: str


class OspoGRPOTrainer(GRPOTrainer):  # type: ignore[misc]
    """``GRPOTrainer`` whose policy loss sees OSPO's per-token advantages (module docstring).

    Takes every ``GRPOTrainer`` argument plus ``ospo`` (:class:`AdapterSettings`, or just
    the service URL), ``label_column`` (the dataset column holding each prompt's label) and
    ``ospo_client`` (a client to use instead of ``ospo.client()``; tests). Raises
    :class:`AdapterError` for a TRL version or a configuration it cannot honour.
    """

    def __init__(
        self,
        *args: Any,
        ospo: AdapterSettings | str,
        label_column: str = "label",
        ospo_client: Attributor | None = None,
        **kwargs: Any,
    ) -> None:
        check_trl_version()
        settings = AdapterSettings(url=ospo) if isinstance(ospo, str) else ospo
        super().__init__(*args, **kwargs)
        problems = refusals(self, settings, label_column)
        if problems:
            raise AdapterError(
                "OspoGRPOTrainer cannot train with these settings:\n  " + "\n  ".join(problems)
            )
        self.ospo_settings = settings
        self.ospo_label_column = label_column
        self._ospo_baseline = BASELINES[self.scale_rewards]
        self._ospo_pending: _Pending | None = None
        # Only the main process talks to the service; the others get its result.
        self._ospo_client = ospo_client
        self._ospo_adapter: OspoAdapter | None = None  # made on first use, main process only

    def train(self, *args: Any, **kwargs: Any) -> Any:
        """TRL's ``train``; the service connections are closed when it ends."""
        try:
            return super().train(*args, **kwargs)
        finally:
            self.close_ospo()

    def close_ospo(self) -> None:
        """Close the adapter's connection (when it made its own) and those of the
        ``OspoReward`` functions it trains with; idempotent."""
        if self._ospo_adapter is not None:
            self._ospo_adapter.close()
            self._ospo_adapter = None
        for function in self.reward_funcs:
            if isinstance(function, OspoReward):
                function.close()

    # ------------------------------------------------------------------ TRL's hooks

    def _calculate_rewards(
        self,
        inputs: list[dict[str, Any]],
        prompts: list[Any],
        completions: list[Any],
        completion_ids_list: list[list[int]],
    ) -> Any:
        rewards_per_func = super()._calculate_rewards(
            inputs, prompts, completions, completion_ids_list
        )
        self._ospo_pending = _Pending(
            lengths=[len(ids) for ids in completion_ids_list],
            labels=[row.get(self.ospo_label_column) for row in inputs],
            rewards_per_func=rewards_per_func,
        )
        return rewards_per_func

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        self._ospo_pending = None
        output: dict[str, Any] = super()._generate_and_score_completions(inputs)
        pending, self._ospo_pending = self._ospo_pending, None
        if not self.model.training:
            return output
        if pending is None:
            raise AdapterError("GRPOTrainer scored completions without _calculate_rewards")
        with torch.no_grad():
            output["advantages"] = self._ospo_advantages(output, pending)
        return output

    # ------------------------------------------------------------------ the step

    def _ospo_advantages(self, output: dict[str, Any], pending: _Pending) -> Any:
        completion_ids = output["completion_ids"]
        batch, width = completion_ids.shape
        rows = [
            (ids, label, self._ospo_prompt(output, i))
            for i, (ids, label) in enumerate(
                zip(completion_tokens(completion_ids, pending.lengths), pending.labels, strict=True)
            )
        ]
        result = self._ospo_broadcast(gather_object(rows), self._ospo_rewards(pending))
        start = self.accelerator.process_index * batch
        local = result.slice(start, start + batch)
        own = output["advantages"].reshape(-1, 1).expand(batch, width)
        positions = _positions(pending.lengths, width, completion_ids.device)
        advantages = scatter_advantages(local, positions, own.to(torch.float32))
        for name, value in result.metrics.items():
            self._metrics["train"][name].append(value)
        mask = output["completion_mask"]
        if "tool_mask" in output:
            mask = mask * output["tool_mask"]
        return advantages * mask.to(advantages.dtype)

    def _ospo_prompt(self, output: dict[str, Any], i: int) -> str:
        """The prompt exactly as the model saw it (chat template included, padding not)."""
        ids = output["prompt_ids"][i][output["prompt_mask"][i].bool()]
        return str(self._tokenizer.decode(ids.tolist(), skip_special_tokens=False))

    def _ospo_rewards(self, pending: _Pending) -> list[float | None]:
        """The global scalar rewards as TRL weighs them; ``None`` where every reward
        function returned ``None`` (TRL's unscorable rows)."""
        per_func = pending.rewards_per_func
        weights = self.reward_weights.to(per_func.device).unsqueeze(0)
        total = (per_func * weights).nansum(dim=1)
        unscorable = torch.isnan(per_func).all(dim=1)
        return [
            None if bad else float(r)
            for r, bad in zip(total.tolist(), unscorable.tolist(), strict=True)
        ]

    def _ospo_broadcast(
        self, rows: list[tuple[tuple[int, ...], Any, str]], rewards: list[float | None]
    ) -> StepResult:
        """The step on the main process, its result (or failure) on every process."""
        payload: list[Any] = [None]
        error: BaseException | None = None
        if self.accelerator.is_main_process:
            try:
                payload[0] = self._ospo_step(rows, rewards)
            except Exception as exc:  # every process must leave the broadcast, then raise
                error = exc
                payload[0] = _Failure(type(exc).__name__, str(exc))
        if self.accelerator.num_processes > 1:
            broadcast_object_list(payload, from_process=0)
        if error is not None:
            raise error
        if isinstance(payload[0], _Failure):
            raise AdapterError(
                f"the OSPO step failed on the main process: {payload[0].kind}: {payload[0].message}"
            )
        return payload[0]  # type: ignore[no-any-return]

    def _ospo_step(
        self, rows: list[tuple[tuple[int, ...], Any, str]], rewards: list[float | None]
    ) -> StepResult:
        if self._ospo_adapter is None:
            self._ospo_adapter = OspoAdapter(self.ospo_settings, client=self._ospo_client)
        if len(rows) != len(rewards):
            raise AdapterError(f"{len(rows)} gathered completions for {len(rewards)} rewards")
        size = int(self.num_generations)
        scored: list[int] = []
        rollouts: list[Rollout] = []
        for k, ((ids, label, prompt), reward) in enumerate(zip(rows, rewards, strict=True)):
            if reward is None or math.isnan(reward):
                continue  # TRL leaves it out of its group and gives it 0
            scored.append(k)
            rollouts.append(
                Rollout.from_token_ids(
                    self._tokenizer,
                    ids,
                    group=k // size,
                    label=label,
                    prompt=prompt,
                    reward=reward,
                )
            )
        result = self._ospo_adapter.step(
            rollouts, step=self.state.global_step, baseline=self._ospo_baseline
        )
        out = [RowResult(token_advantages=(0.0,) * len(ids)) for ids, _, _ in rows]
        for k, row in zip(scored, result.rows, strict=True):
            out[k] = row
        return dataclasses.replace(result, rows=tuple(out))
