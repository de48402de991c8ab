"""What the study trains: the scale of an invocation, the arms (one trainer config each) and
the tables (which arms, against which reference, how many seeds).

Every arm is a full ``TrainConfig`` with the credit options spelled out (never "the service
default"), so a stored run keeps meaning the same thing when a default changes. The main
OSPO-PROP arm is the paper's configuration (w = 8, M = 96, ``owen``, per-step seeds) and is
the reference of every ablation: an ablation changes exactly one option of it, and its seeds
are a prefix of the main table's, so the reference runs are shared, never retrained.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from experiments.train.loop import TrainConfig

MAIN_WIDTH = 8
MAIN_BUDGET = 96
"""The paper's default (its complexity script labels w8-p96 "default"). With the tiny
policy's ≤ 12-word queries every window of width ≤ 8 fits (at most 68 + ∅ + N), so nothing is
sampled: each segment's value uses every evaluated marginal."""


@dataclass(frozen=True)
class Scale:
    """The budget of one invocation (the same for every arm of a table)."""

    seeds: int = 8
    ablation_seeds: int = 5
    steps: int = 60
    eval_every: int = 5
    group_size: int = 8
    prompts_per_step: int = 4
    eval_queries: int | None = None
    smollm2_seeds: int = 5
    smollm2_steps: int = 10
    smollm2_group_size: int = 4
    smollm2_prompts: int = 2
    smollm2_eval_queries: int = 8
    smollm2_new_tokens: int = 20
    cost_batches: int = 2


SMOKE = Scale(
    seeds=1,
    ablation_seeds=1,
    steps=2,
    eval_every=1,
    group_size=4,
    prompts_per_step=2,
    eval_queries=6,
    smollm2_seeds=1,
    smollm2_steps=1,
    smollm2_group_size=2,
    smollm2_prompts=1,
    smollm2_eval_queries=2,
    smollm2_new_tokens=6,
    cost_batches=1,
)


@dataclass(frozen=True)
class Arm:
    """One arm: a label (for tables only: it is not part of the run's identity), the trainer
    config and the policy."""

    label: str
    config: TrainConfig
    policy: str = "tiny"


@dataclass(frozen=True)
class Comparison:
    """A paired comparison: ``arm`` minus ``reference``, and which sign the claim predicts
    (+1: the arm should be better, -1: the reference should be better)."""

    arm: str
    reference: str
    direction: int = 1
    claim: str = ""


@dataclass(frozen=True)
class Table:
    name: str
    title: str
    arms: tuple[Arm, ...]
    seeds: int
    comparisons: tuple[Comparison, ...] = field(default_factory=tuple)
    note: str = ""

    def arm(self, label: str) -> Arm:
        return next(a for a in self.arms if a.label == label)


def base_config(scale: Scale, advantage: str = "ospo-prop", **changes: Any) -> TrainConfig:
    """The main comparison's trainer config (tiny policy, word segments)."""
    config = TrainConfig(
        advantage=advantage,
        steps=scale.steps,
        group_size=scale.group_size,
        prompts_per_step=scale.prompts_per_step,
        max_width=MAIN_WIDTH,
        max_coalitions=MAIN_BUDGET,
        estimator="owen",
        segmenter="word",
        credit="positive",
        negative="same",
        sampler="contiguous",
        lr=3e-3,
        eval_every=scale.eval_every,
        eval_queries=scale.eval_queries,
    )
    return replace(config, **changes)


REFERENCE = "ospo-prop"
"""The main OSPO-PROP arm: the reference of every ablation."""


def _ablation(
    scale: Scale,
    name: str,
    title: str,
    variants: Sequence[tuple[str, dict[str, Any]]],
    claim: str,
    direction: int = -1,
    seeds: int | None = None,
    note: str = "",
) -> Table:
    """The main PROP arm plus one arm per variant; each variant is compared with the main
    arm (direction -1: the claim says the main arm's setting trains better)."""
    arms = [Arm(REFERENCE, base_config(scale))]
    arms += [Arm(label, base_config(scale, **changes)) for label, changes in variants]
    return Table(
        name=name,
        title=title,
        arms=tuple(arms),
        seeds=seeds if seeds is not None else scale.ablation_seeds,
        comparisons=tuple(Comparison(label, REFERENCE, direction, claim) for label, _ in variants),
        note=note,
    )


def tables(scale: Scale) -> dict[str, Table]:
    """Every training table, in the order the study runs them (priority order)."""
    main = Table(
        name="main",
        title=f"GRPO vs OSPO at the paper's configuration (w={MAIN_WIDTH}, M={MAIN_BUDGET})",
        arms=(
            Arm("grpo", base_config(scale, "grpo")),
            Arm("ospo-prop", base_config(scale, "ospo-prop")),
            Arm("ospo-rank", base_config(scale, "ospo-rank")),
        ),
        seeds=scale.seeds,
        comparisons=(
            Comparison("ospo-prop", "grpo", 1, "OSPO-PROP beats GRPO"),
            Comparison("ospo-rank", "grpo", 1, "OSPO-RANK beats GRPO"),
        ),
    )
    found = {"main": main}
    found["budget"] = _ablation(
        scale,
        "budget",
        f"Budget M at w={MAIN_WIDTH} (OSPO-PROP)",
        [(f"M={m}", {"max_coalitions": m}) for m in (8, 24)],
        "a smaller budget trains worse than M=96",
    )
    found["estimator"] = _ablation(
        scale,
        "estimator",
        "Estimator (OSPO-PROP, w=8, M=96)",
        [("owen-sum", {"estimator": "owen-sum"}), ("myerson", {"estimator": "myerson"})],
        "owen (normalised) trains at least as well",
    )
    found["credit"] = _ablation(
        scale,
        "credit",
        "Credit rule (OSPO-PROP, w=8, M=96)",
        [("minmax", {"credit": "minmax"})],
        "positive-part credit trains at least as well as min-max",
    )
    found["negative"] = _ablation(
        scale,
        "negative",
        "Blame of negative advantages (OSPO-PROP, w=8, M=96)",
        [("inverse", {"negative": "inverse"})],
        "the paper's rule (same) trains at least as well as inverse",
    )
    found["width"] = _ablation(
        scale,
        "width",
        f"Width w at M={MAIN_BUDGET} (OSPO-PROP)",
        [(f"w={w}", {"max_width": w}) for w in (1, 2, 4)],
        "moderate width (w=8) beats narrow windows",
    )
    found["sampler"] = _ablation(
        scale,
        "sampler",
        f"Contiguous windows vs random subsets at M={MAIN_BUDGET} (OSPO-PROP)",
        [("random", {"sampler": "random"})],
        "non-contiguous coalitions train worse (the paper: they collapse)",
    )
    return found


def smollm2_table(scale: Scale) -> Table:
    """SmolLM2-135M + LoRA with phrase segments at the paper's configuration."""
    arms = tuple(
        Arm(
            advantage,
            base_config(
                scale,
                advantage,
                steps=scale.smollm2_steps,
                group_size=scale.smollm2_group_size,
                prompts_per_step=scale.smollm2_prompts,
                segmenter="phrase",
                lr=1e-4,
                eval_every=max(1, scale.smollm2_steps // 5),
                eval_queries=scale.smollm2_eval_queries,
            ),
            policy="smollm2",
        )
        for advantage in ("grpo", "ospo-prop")
    )
    return Table(
        name="smollm2",
        title="SmolLM2-135M + LoRA, phrase segments: GRPO vs OSPO-PROP (w=8, M=96)",
        arms=arms,
        seeds=scale.smollm2_seeds,
        comparisons=(Comparison("ospo-prop", "grpo", 1, "OSPO-PROP beats GRPO (real LM)"),),
    )


TRAINING_TABLES = ("main", "budget", "estimator", "credit", "negative", "width", "sampler")
OTHER_TABLES = ("cross-retriever", "smollm2", "cost")
ALL_TABLES = TRAINING_TABLES + OTHER_TABLES

__all__ = [
    "ALL_TABLES",
    "MAIN_BUDGET",
    "MAIN_WIDTH",
    "OTHER_TABLES",
    "REFERENCE",
    "SMOKE",
    "TRAINING_TABLES",
    "Arm",
    "Comparison",
    "Scale",
    "Table",
    "base_config",
    "smollm2_table",
    "tables",
]
