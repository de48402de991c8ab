"""The training loop of `python -m experiments.train`: sample groups, ask the service for token advantages,
update, evaluate on held-out requests, and write one metrics row per step.

The service is reached only through an :class:`Attributor` (``AttributionClient`` in
practice), so the loop never touches retrieval or the engine. Every random choice comes from
generators seeded by ``TrainConfig.seed`` (prompt order and sampling separately, so the
advantage modes see the same prompts in the same order), and step ``s`` asks the service with
seed ``TrainConfig.seed + s``: the coalition sample changes from step to step (a frozen sample
would give a segment the same sampling error for the whole run) and a run stays reproducible.

The ``grpo`` arm asks for rewards only (``POST /reward``, OpenRLHF's remote reward-model
protocol) and computes the group advantages itself with the service's own baseline function,
as a plain GRPO trainer does: it pays for one retrieval per response, never for coalitions.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from tqdm import tqdm

from experiments.train.grpo import sample_groups, update
from experiments.train.rollout import Policy, Rollout
from service.attribution.advantages import group_advantages
from trainer_client import AttributeResult, Group, Options, Response, RewardResult, Target

logger = logging.getLogger(__name__)

ADVANTAGE_MODES: Mapping[str, str] = {"grpo": "uniform", "ospo-prop": "prop", "ospo-rank": "rank"}
"""`--advantage` -> the service's ``redistribution`` option."""

METRIC_FIELDS = (
    "step",
    "mean_reward",
    "heldout_ndcg",
    "mean_advantage",
    "mean_abs_advantage",
    "mean_length",
    "loss",
    "clip_fraction",
    "approx_kl",
    "service_ms",
    "step_ms",
)
"""Columns of ``metrics.csv``. Only the ``*_ms`` columns vary between runs with one seed."""


class Attributor(Protocol):
    """What the loop needs from the service (``trainer_client.AttributionClient`` fits):
    ``attribute`` for OSPO steps and held-out scoring, ``reward`` for the GRPO arm's steps."""

    def attribute(
        self, groups: Sequence[Group], options: Options | None = None
    ) -> AttributeResult: ...

    def reward(
        self, queries: Sequence[str], prompts: Sequence[str], labels: Sequence[str]
    ) -> RewardResult: ...


class PromptSource(Protocol):
    """The part of a catalog the loop needs: request texts and their split."""

    @property
    def queries(self) -> dict[str, str]: ...

    def query_ids(self, split: str | None = None) -> list[str]: ...


@dataclass(frozen=True)
class TrainConfig:
    advantage: str = "ospo-prop"
    steps: int = 40
    seed: int = 0
    group_size: int = 8
    prompts_per_step: int = 4
    max_width: int = 8
    max_coalitions: int = 32
    retriever: str = "default"
    estimator: str = "owen"
    segmenter: str = "phrase"
    baseline: str = "group_norm"
    clip: float | None = None
    """The service's token-advantage clip (±clip·std(Â)); None disables it. Off by default:
    PROP/RANK concentrate a response's T·Â on a few tokens, and clipping those cuts most of
    the signal that GRPO keeps."""
    lr: float = 3e-3
    epochs: int = 2
    clip_eps: float = 0.2
    max_grad_norm: float | None = 1.0
    eval_every: int = 10
    eval_queries: int | None = None
    """Evaluate on the first N held-out requests only (None: all of them)."""
    credit: str | None = None
    """``/attribute`` options left at the service default when None."""
    negative: str | None = None
    sampler: str | None = None

    def __post_init__(self) -> None:
        if self.advantage not in ADVANTAGE_MODES:
            raise ValueError(
                f"advantage must be one of {sorted(ADVANTAGE_MODES)}, not {self.advantage!r}"
            )
        for name in (
            "steps",
            "group_size",
            "prompts_per_step",
            "max_width",
            "epochs",
            "eval_every",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.max_coalitions < 2:
            raise ValueError("max_coalitions must be >= 2")

    def options(self, step: int = 0) -> Options:
        """The ``/attribute`` options of training step ``step`` (seed = run seed + step)."""
        return Options(
            retriever=self.retriever,
            max_width=self.max_width,
            max_coalitions=self.max_coalitions,
            segmenter=self.segmenter,
            estimator=self.estimator,
            redistribution=ADVANTAGE_MODES[self.advantage],
            baseline=self.baseline,
            clip=self.clip,
            seed=self.seed + step,
            credit=self.credit,
            negative=self.negative,
            sampler=self.sampler,
        )

    @property
    def rewards_only(self) -> bool:
        """GRPO needs v(N) only: its steps go to ``/reward``, not ``/attribute``."""
        return self.advantage == "grpo"

    def eval_options(self) -> Options:
        """Held-out scoring needs only v(N), the reward: the smallest plan (∅ and N). Always
        `owen`, whatever the training estimator: myerson/shapley need every window or subset
        and would be refused under max_coalitions=2."""
        return Options(
            retriever=self.retriever,
            max_width=1,
            max_coalitions=2,
            estimator="owen",
            redistribution="uniform",
            baseline=self.baseline,
            seed=self.seed,
        )


@dataclass
class TrainResult:
    rows: list[dict[str, float | int | None]] = field(default_factory=list)
    initial_ndcg: float = 0.0
    final_ndcg: float = 0.0


def split_queries(prompts: PromptSource) -> tuple[list[str], list[str]]:
    """Train and held-out query ids: the catalog's split, else every fifth query held out."""
    train, test = prompts.query_ids("train"), prompts.query_ids("test")
    if train and test:
        return train, test
    every = prompts.query_ids()
    return [q for i, q in enumerate(every) if i % 5], every[::5]


def build_groups(
    step: int, query_ids: Sequence[str], groups: Sequence[Sequence[Rollout]]
) -> list[Group]:
    return [
        Group(
            id=f"step{step}/{query_id}",
            target=Target(query_id=query_id),
            responses=[
                Response(text=r.text, span=r.span, token_offsets=r.token_offsets) for r in rollouts
            ],
        )
        for query_id, rollouts in zip(query_ids, groups, strict=True)
    ]


def evaluate(
    policy: Policy,
    service: Attributor,
    prompts: PromptSource,
    query_ids: Sequence[str],
    config: TrainConfig,
) -> float:
    """Mean retrieval NDCG of the policy's greedy query for each held-out request."""
    generator = torch.Generator().manual_seed(config.seed)
    rollouts = policy.sample([prompts.queries[q] for q in query_ids], 1, generator, greedy=True)
    groups = [
        Group(
            id=f"eval/{q}",
            target=Target(query_id=q),
            responses=[Response(text=r.text, span=r.span)],
        )
        for q, r in zip(query_ids, rollouts, strict=True)
    ]
    result = service.attribute(groups, config.eval_options())
    rewards = [response.reward for response in result.responses]
    return sum(rewards) / len(rewards)


def train(
    policy: Policy,
    service: Attributor,
    prompts: PromptSource,
    config: TrainConfig,
    out_dir: Path | None = None,
    *,
    progress: bool = True,
) -> TrainResult:
    """Run ``config.steps`` steps; write ``metrics.csv`` (and ``summary.json``) to out_dir."""
    train_ids, test_ids = split_queries(prompts)
    if not train_ids or not test_ids:
        raise ValueError("the catalog needs both training and held-out queries")
    if config.eval_queries is not None:
        test_ids = test_ids[: config.eval_queries]
    torch.manual_seed(config.seed)
    prompt_generator = torch.Generator().manual_seed(config.seed)
    sample_generator = torch.Generator().manual_seed(config.seed + 1)
    optimizer = torch.optim.Adam(policy.trainable_parameters(), lr=config.lr)

    result = TrainResult()
    result.initial_ndcg = evaluate(policy, service, prompts, test_ids, config)
    result.rows.append(_row(0, heldout_ndcg=result.initial_ndcg))
    writer = _MetricsWriter(out_dir)
    writer.write(result.rows[-1])
    logger.info("step 0: held-out NDCG %.4f over %d requests", result.initial_ndcg, len(test_ids))

    bar = tqdm(
        total=config.steps, desc=f"train {config.advantage}", disable=not progress, unit="step"
    )
    try:
        for step in range(1, config.steps + 1):
            started = time.perf_counter()
            order = torch.randperm(len(train_ids), generator=prompt_generator)
            chosen = [train_ids[int(i)] for i in order[: config.prompts_per_step]]
            groups = sample_groups(
                policy, [prompts.queries[q] for q in chosen], config.group_size, sample_generator
            )
            called = time.perf_counter()
            rollouts = [r for group in groups for r in group]
            if config.rewards_only:
                rewards, advantages = _grpo_step(service, chosen, groups, config.baseline)
            else:
                answer = service.attribute(build_groups(step, chosen, groups), config.options(step))
                rewards = [a.reward for a in answer.responses]
                advantages = [
                    _token_advantages(r, a.token_advantages)
                    for r, a in zip(rollouts, answer.responses, strict=True)
                ]
            service_ms = (time.perf_counter() - called) * 1000.0
            stats = update(
                policy,
                optimizer,
                rollouts,
                advantages,
                epochs=config.epochs,
                clip_eps=config.clip_eps,
                max_grad_norm=config.max_grad_norm,
            )
            heldout: float | None = None
            if step % config.eval_every == 0 or step == config.steps:
                heldout = evaluate(policy, service, prompts, test_ids, config)
                result.final_ndcg = heldout
            all_advantages = torch.cat(advantages)
            row = _row(
                step,
                mean_reward=sum(rewards) / len(rollouts),
                heldout_ndcg=heldout,
                mean_advantage=float(all_advantages.mean()),
                mean_abs_advantage=float(all_advantages.abs().mean()),
                mean_length=sum(r.length for r in rollouts) / len(rollouts),
                loss=stats.loss,
                clip_fraction=stats.clip_fraction,
                approx_kl=stats.approx_kl,
                service_ms=service_ms,
                step_ms=(time.perf_counter() - started) * 1000.0,
            )
            result.rows.append(row)
            writer.write(row)
            postfix = {"reward": f"{row['mean_reward']:.3f}"}
            if heldout is not None:
                postfix["ndcg"] = f"{heldout:.3f}"
            bar.set_postfix(postfix)
            bar.update(1)
    finally:
        bar.close()
        writer.close()
    if out_dir is not None:
        summary: dict[str, Any] = {
            "policy": policy.name,
            "config": asdict(config),
            "initial_heldout_ndcg": result.initial_ndcg,
            "final_heldout_ndcg": result.final_ndcg,
            "heldout_queries": len(test_ids),
        }
        (out_dir / "summary.json").write_text(
            json.dumps(summary, indent=2) + "\n", encoding="utf-8"
        )
    logger.info("held-out NDCG %.4f -> %.4f", result.initial_ndcg, result.final_ndcg)
    return result


def _grpo_step(
    service: Attributor,
    query_ids: Sequence[str],
    groups: Sequence[Sequence[Rollout]],
    baseline: str,
) -> tuple[list[float], list[torch.Tensor]]:
    """Rewards from ``/reward`` (query = prompt + response, label = the request's id) and
    every token of a response given its group advantage, computed by the service's own
    baseline function so that GRPO differs from OSPO only in the redistribution."""
    flat = [(q, r) for q, group in zip(query_ids, groups, strict=True) for r in group]
    answer = service.reward(
        [r.prompt + r.text for _, r in flat], [r.prompt for _, r in flat], [q for q, _ in flat]
    )
    if len(answer.rewards) != len(flat):
        raise ValueError(f"/reward returned {len(answer.rewards)} rewards for {len(flat)} queries")
    rewards = list(answer.rewards)
    advantages: list[torch.Tensor] = []
    start = 0
    for group in groups:
        group_rewards = rewards[start : start + len(group)]
        start += len(group)
        for rollout, advantage in zip(
            group, group_advantages(group_rewards, baseline), strict=True
        ):
            advantages.append(torch.full((rollout.length,), float(advantage)))
    return rewards, advantages


def _token_advantages(rollout: Rollout, values: Sequence[float] | None) -> torch.Tensor:
    if values is None or len(values) != rollout.length:
        got = "none" if values is None else str(len(values))
        raise ValueError(f"the service returned {got} token advantages for {rollout.length} tokens")
    return torch.tensor(values, dtype=torch.float32)


def _row(step: int, **values: float | None) -> dict[str, float | int | None]:
    row: dict[str, float | int | None] = dict.fromkeys(METRIC_FIELDS)
    row["step"] = step
    row.update(values)
    return row


class _MetricsWriter:
    """``metrics.csv``, flushed after every row so a long run can be watched."""

    def __init__(self, out_dir: Path | None) -> None:
        self._file = None
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            self._file = open(out_dir / "metrics.csv", "w", newline="", encoding="utf-8")  # noqa: SIM115
            self._csv = csv.DictWriter(self._file, fieldnames=METRIC_FIELDS)
            self._csv.writeheader()

    def write(self, row: Mapping[str, float | int | None]) -> None:
        if self._file is None:
            return
        self._csv.writerow({k: _format(v) for k, v in row.items()})
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def _format(value: float | int | None) -> str:
    if value is None:
        return ""
    if isinstance(value, int):
        return str(value)
    return f"{value:.6f}"


__all__ = [
    "ADVANTAGE_MODES",
    "METRIC_FIELDS",
    "Attributor",
    "PromptSource",
    "TrainConfig",
    "TrainResult",
    "build_groups",
    "evaluate",
    "split_queries",
    "train",
]
