"""The OSPO paper's claims reproduced in miniature (issue 9): one command per table.

    .venv/bin/python -m experiments.study arms|width|contiguity|estimator|cross-retriever|cost|smollm2|all
        [--seeds N] [--steps N] [--smoke] [--fresh]

Every table trains the `tiny` policy (or SmolLM2) with ``experiments.train.loop.train`` against
one service started in this process (``serve_in_background``, in-process score cache) that
hosts two retrievers over the demo catalog: ``default`` (all-MiniLM-L6-v2, used for training)
and ``cross`` (all-mpnet-base-v2, used only by the cross-retriever evaluation).

Outputs under ``--out`` (default ``docs/study/``): ``<table>.csv`` (one row per arm),
``<table>.md`` (the same as a markdown table), ``<table>_curves.csv`` (held-out NDCG per
evaluated step, one row per run) and ``<table>.png`` (mean learning curve with a ±1 std band
over seeds). A finished run (its config, rows, per-step service records and the tiny policy's
weights) is kept under ``--runs-dir`` keyed by its full config, so tables that share a run
(the width-4 point of the width sweep is the OSPO-PROP arm) and re-runs reuse it; ``--fresh``
retrains. Runs are deterministic for a seed apart from the ``*_ms`` timings.

Non-contiguous coalitions: the ``contiguity`` table's ablation arm sends
``options.sampler = "random"`` (the API extension that plans
``service.attribution.random_coalitions``: ∅, N and M-2 random proper subsets).
"""

from __future__ import annotations

import argparse
import csv
import functools
import hashlib
import json
import logging
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

for _name, _value in (
    ("HF_HUB_OFFLINE", "1"),
    ("TRANSFORMERS_OFFLINE", "1"),
    ("TOKENIZERS_PARALLELISM", "false"),
):
    os.environ.setdefault(_name, _value)

REPO = Path(__file__).resolve().parents[2]

import torch  # noqa: E402

from experiments.train.loop import TrainConfig, evaluate, split_queries, train  # noqa: E402
from trainer_client import AttributeResult, Group, Options  # noqa: E402

logger = logging.getLogger(__name__)

TABLES = ("arms", "width", "contiguity", "estimator", "cross-retriever", "cost", "smollm2")
ARMS = ("grpo", "ospo-prop", "ospo-rank")
WIDTHS = (1, 2, 4, 8)
CROSS_RETRIEVER = "cross"
MAX_WORDS = 12
"""The tiny policy's longest response; the exact Myerson value needs every window of it."""
ALL_WINDOWS = MAX_WORDS * (MAX_WORDS + 1) // 2 + 1


@dataclass(frozen=True)
class Scale:
    """Budget of one study invocation (the same for every arm of a table)."""

    seeds: int
    steps: int
    eval_every: int
    group_size: int = 8
    prompts_per_step: int = 4
    eval_queries: int | None = None
    smollm2_seeds: int = 2
    smollm2_steps: int = 6
    smollm2_group_size: int = 4
    smollm2_prompts: int = 2
    smollm2_eval_queries: int = 8
    smollm2_new_tokens: int = 20
    cost_batches: int = 4


def full_scale(seeds: int | None, steps: int | None) -> Scale:
    steps = steps or 30
    return Scale(seeds=seeds or 5, steps=steps, eval_every=max(1, steps // 10))


def smoke_scale() -> Scale:
    return Scale(
        seeds=1,
        steps=2,
        eval_every=1,
        group_size=4,
        prompts_per_step=2,
        eval_queries=8,
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
    """One column of a table: a label, the trainer config and the coalition sampler."""

    label: str
    config: TrainConfig
    contiguous: bool = True
    policy: str = "tiny"


@dataclass
class StepRecord:
    """What the service answered to one training step."""

    responses: int
    coalitions: int
    unique_queries: int
    cache_hits: int
    encoded: int
    service_total_ms: float
    within_group_reward_var: float


@dataclass
class RunResult:
    arm: str
    seed: int
    rows: list[dict[str, Any]]
    records: list[StepRecord]
    initial_ndcg: float
    final_ndcg: float
    wall_s: float
    cross_initial_ndcg: float | None = None
    cross_final_ndcg: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# --- the service -----------------------------------------------------------------------------


class RecordingAttributor:
    """The HTTP client plus a record of each training step's service stats; with
    ``contiguous=False`` its requests ask for random (non-contiguous) coalitions
    (``options.sampler = "random"``)."""

    def __init__(self, client: Any, *, contiguous: bool = True) -> None:
        self._client = client
        self._contiguous = contiguous
        self.records: list[StepRecord] = []

    def attribute(self, groups: Sequence[Group], options: Options | None = None) -> AttributeResult:
        evaluating = bool(groups) and groups[0].id.startswith("eval/")
        options = options or Options()
        if evaluating and options.estimator == "myerson":
            # The loop's held-out plan is 2 coalitions (only v(N) is needed), which the exact
            # Myerson estimator refuses; the reward does not depend on the estimator.
            options = replace(options, estimator="owen")
        if not self._contiguous:
            options = replace(options, sampler="random")
        result: AttributeResult = self._client.attribute(groups, options)
        if not evaluating:
            variances = [
                statistics.pvariance([r.reward for r in group.responses])
                for group in result.groups
                if len(group.responses) > 1
            ]
            self.records.append(
                StepRecord(
                    responses=len(result.responses),
                    coalitions=result.stats.coalitions,
                    unique_queries=result.stats.unique_queries,
                    cache_hits=result.stats.cache_hits,
                    encoded=result.stats.encoded,
                    service_total_ms=float(result.stats.timings_ms.get("total", math.nan)),
                    within_group_reward_var=statistics.fmean(variances) if variances else 0.0,
                )
            )
        return result


@contextmanager
def local_service(data_dir: Path, cross_encoder: str | None) -> Iterator[Any]:
    """One in-process service (MiniLM `default`, and the `cross` retriever when an encoder
    is given) and a client to it."""
    from service.api.local import serve_in_background
    from service.config import Settings
    from trainer_client import AttributionClient

    data_dir.mkdir(parents=True, exist_ok=True)
    config_file = data_dir / "study-retrievers.toml"
    entries = [("default", "all-MiniLM-L6-v2")]
    if cross_encoder is not None:
        entries.append((CROSS_RETRIEVER, cross_encoder))
    config_file.write_text(
        "".join(
            f'[[retrievers]]\nname = "{name}"\nencoder = "{encoder}"\ncatalog = "demo"\n'
            'index_type = "flat"\n\n'
            for name, encoder in entries
        ),
        encoding="utf-8",
    )
    # redis_url None: the in-process LRU, nothing shared with other users of a Redis.
    settings = Settings(config_file=config_file, data_dir=data_dir, redis_url=None)
    with (
        serve_in_background(settings) as server,
        AttributionClient(server.url, max_retries=0) as client,
    ):
        yield client


def run_key_source(arm: Arm, seed: int) -> str:
    config = replace(arm.config, seed=seed)
    return json.dumps(
        {"config": asdict(config), "contiguous": arm.contiguous, "policy": arm.policy},
        sort_keys=True,
    )


def run_key(arm: Arm, seed: int) -> str:
    """The on-disk name of a run: everything that changes its result (not the label)."""
    return hashlib.sha256(run_key_source(arm, seed).encode()).hexdigest()[:16]


# --- runs --------------------------------------------------------------------------------------


class Study:
    """Trains (or reuses) runs and writes tables; one service for the whole invocation."""

    def __init__(
        self,
        client: Any,
        scale: Scale,
        out_dir: Path,
        runs_dir: Path,
        *,
        fresh: bool,
        smoke: bool,
    ) -> None:
        from service.retrieval.demo import build_demo_catalog

        self.client = client
        self.scale = scale
        self.out_dir = out_dir
        self.runs_dir = runs_dir
        self.fresh = fresh
        self.smoke = smoke
        self.catalog = build_demo_catalog()
        self._memo: dict[str, RunResult] = {}

    # configs
    def base_config(self, advantage: str = "ospo-prop", **changes: Any) -> TrainConfig:
        config = TrainConfig(
            advantage=advantage,
            steps=self.scale.steps,
            group_size=self.scale.group_size,
            prompts_per_step=self.scale.prompts_per_step,
            max_width=4,
            max_coalitions=8,
            segmenter="word",
            lr=3e-3,
            eval_every=self.scale.eval_every,
            eval_queries=self.scale.eval_queries,
        )
        return replace(config, **changes)

    def seeds(self, fewer: bool = False) -> list[int]:
        count = self.scale.seeds if not fewer else max(1, min(self.scale.seeds, 3))
        return list(range(count))

    # one run
    def run(self, arm: Arm, seed: int) -> RunResult:
        config = replace(arm.config, seed=seed)
        key_source = run_key_source(arm, seed)
        key = run_key(arm, seed)
        if key in self._memo:
            return replace(self._memo[key], arm=arm.label)
        run_dir = self.runs_dir / key
        saved = run_dir / "run.json"
        if saved.exists() and not self.fresh:
            result = _load_run(saved)
            result.arm = arm.label
            self._memo[key] = result
            return result
        logger.info("training %s seed %d (%s)", arm.label, seed, key)
        torch.manual_seed(seed)  # the policy's initial weights
        policy = self._policy(arm)
        recorder = RecordingAttributor(self.client, contiguous=arm.contiguous)
        started = time.perf_counter()
        trained = train(policy, recorder, self.catalog, config, None, progress=False)
        wall_s = time.perf_counter() - started
        result = RunResult(
            arm=arm.label,
            seed=seed,
            rows=trained.rows,
            records=recorder.records,
            initial_ndcg=trained.initial_ndcg,
            final_ndcg=trained.final_ndcg,
            wall_s=wall_s,
        )
        run_dir.mkdir(parents=True, exist_ok=True)
        if arm.policy == "tiny":
            torch.save(policy.model.state_dict(), run_dir / "tiny_policy.pt")
        saved.write_text(
            json.dumps({"key_source": json.loads(key_source), **asdict(result)}) + "\n",
            encoding="utf-8",
        )
        self._memo[key] = result
        logger.info(
            "%s seed %d: held-out NDCG %.3f -> %.3f in %.0f s",
            arm.label,
            seed,
            result.initial_ndcg,
            result.final_ndcg,
            wall_s,
        )
        return result

    def _policy(self, arm: Arm) -> Any:
        if arm.policy == "tiny":
            from experiments.train.policy_tiny import TinyPolicy

            return TinyPolicy.from_catalog(self.catalog)
        from experiments.train.policy_smollm2 import SmolLM2Config, SmolLM2Policy

        return SmolLM2Policy(SmolLM2Config(max_new_tokens=self.scale.smollm2_new_tokens))

    def trained_tiny_policy(self, arm: Arm, seed: int) -> Any:
        """The final tiny policy of (arm, seed), trained first if it is not on disk."""
        from experiments.train.policy_tiny import TinyPolicy

        self.run(arm, seed)
        key = run_key(arm, seed)
        policy = TinyPolicy.from_catalog(self.catalog)
        policy.model.load_state_dict(torch.load(self.runs_dir / key / "tiny_policy.pt"))
        return policy

    def runs(self, arms: Sequence[Arm], seeds: Sequence[int]) -> dict[str, list[RunResult]]:
        return {arm.label: [self.run(arm, seed) for seed in seeds] for arm in arms}

    # tables
    def arms_table(self) -> None:
        arms = [Arm(a, self.base_config(a)) for a in ARMS]
        results = self.runs(arms, self.seeds())
        self.write_table("arms", results, "Arms: GRPO vs OSPO (tiny policy, w=4, M=8)")

    def width_table(self) -> None:
        arms = [Arm(f"ospo-prop w={w}", self.base_config("ospo-prop", max_width=w)) for w in WIDTHS]
        results = self.runs(arms, self.seeds(fewer=True))
        self.write_table("width", results, "Width sweep (OSPO-PROP, M=8)")

    def contiguity_table(self) -> None:
        config = self.base_config("ospo-prop")
        arms = [
            Arm("ospo-prop contiguous", config),
            Arm("ospo-prop non-contiguous", config, contiguous=False),
        ]
        results = self.runs(arms, self.seeds(fewer=True))
        self.write_table("contiguity", results, "Contiguous vs random-subset coalitions (M=8)")

    def estimator_table(self) -> None:
        arms = [
            Arm("grpo (reference)", self.base_config("grpo")),
            Arm("owen w=4 M=8", self.base_config("ospo-prop")),
            Arm(
                f"owen all windows (M={ALL_WINDOWS})",
                self.base_config("ospo-prop", max_width=MAX_WORDS, max_coalitions=ALL_WINDOWS),
            ),
            Arm(
                f"myerson (M={ALL_WINDOWS})",
                self.base_config(
                    "ospo-prop",
                    estimator="myerson",
                    max_width=MAX_WORDS,
                    max_coalitions=ALL_WINDOWS,
                ),
            ),
        ]
        results = self.runs(arms, self.seeds(fewer=True))
        self.write_table("estimator", results, "Estimator and budget: owen vs myerson (OSPO-PROP)")

    def cross_retriever_table(self) -> None:
        """Evaluate the arms' final policies (trained against MiniLM) against the mpnet index."""
        from experiments.train.policy_tiny import TinyPolicy

        arms = [Arm(a, self.base_config(a)) for a in ARMS]
        test_ids = split_queries(self.catalog)[1]
        rows: list[dict[str, Any]] = []

        def untrained(seed: int) -> Any:
            torch.manual_seed(seed)
            return TinyPolicy.from_catalog(self.catalog)

        for label, policy_of in [("untrained", untrained)] + [
            (arm.label, functools.partial(self.trained_tiny_policy, arm)) for arm in arms
        ]:
            own, cross = [], []
            for seed in self.seeds():
                policy = policy_of(seed)
                config = replace(self.base_config(), seed=seed)
                eval_ids = test_ids[: config.eval_queries] if config.eval_queries else test_ids
                own.append(evaluate(policy, self.client, self.catalog, eval_ids, config))
                cross_config = replace(config, retriever=CROSS_RETRIEVER)
                cross.append(evaluate(policy, self.client, self.catalog, eval_ids, cross_config))
            drops = [a - b for a, b in zip(own, cross, strict=True)]
            rows.append(
                {
                    "arm": label,
                    "seeds": len(own),
                    "minilm_ndcg": _mean_std(own),
                    "mpnet_ndcg": _mean_std(cross),
                    "drop": _mean_std(drops),
                    "relative_drop_pct": _mean_std(
                        [100.0 * d / a if a > 0 else 0.0 for d, a in zip(drops, own, strict=True)]
                    ),
                    "minilm_ndcg_mean": statistics.fmean(own),
                    "mpnet_ndcg_mean": statistics.fmean(cross),
                }
            )
        self.write_rows("cross-retriever", rows, "Cross-retriever: train MiniLM, test mpnet")

    def cost_table(self) -> None:
        """Service cost of one training step per arm and width, measured with the score cache
        off on fixed batches from the untrained policy (so every arm pays full price), plus
        the mean in-training service time (cache on) from the arms and width runs."""
        from experiments.train.loop import build_groups
        from experiments.train.policy_tiny import TinyPolicy

        # The service plans coalitions for every redistribution, GRPO's included; a GRPO
        # trainer needs only v(N), whose cost is the reward-only plan (∅ and N).
        configs: list[tuple[str, TrainConfig, bool]] = [
            (
                "grpo reward-only (M=2)",
                self.base_config("grpo", max_width=1, max_coalitions=2),
                True,
            )
        ]
        configs += [(a, self.base_config(a), True) for a in ARMS]
        configs += [(f"ospo-prop w={w}", self.base_config(max_width=w), True) for w in WIDTHS]
        configs += [("ospo-prop non-contiguous", self.base_config(), False)]
        configs += [
            (
                f"myerson (M={ALL_WINDOWS})",
                self.base_config(
                    estimator="myerson", max_width=MAX_WORDS, max_coalitions=ALL_WINDOWS
                ),
                True,
            )
        ]
        torch.manual_seed(0)  # the same untrained policy, hence the same batches, every time
        policy = TinyPolicy.from_catalog(self.catalog)
        train_ids = split_queries(self.catalog)[0]
        generator = torch.Generator().manual_seed(0)
        batches = []
        for b in range(self.scale.cost_batches):
            ids = train_ids[b * self.scale.prompts_per_step : (b + 1) * self.scale.prompts_per_step]
            rollouts = policy.sample(
                [self.catalog.queries[q] for q in ids], self.scale.group_size, generator
            )
            groups = [
                rollouts[i * self.scale.group_size : (i + 1) * self.scale.group_size]
                for i in range(len(ids))
            ]
            batches.append(build_groups(b, ids, groups))
        in_training = self._in_training_service_ms()
        rows: list[dict[str, Any]] = []
        for label, config, contiguous in configs:
            options = replace(config.options(), cache=False)
            recorder = RecordingAttributor(self.client, contiguous=contiguous)
            wall_ms = []
            for batch in batches:
                started = time.perf_counter()
                recorder.attribute(batch, options)
                wall_ms.append((time.perf_counter() - started) * 1000.0)
            records = recorder.records
            rows.append(
                {
                    "arm": label,
                    "segments_with_a_marginal": round(
                        marginal_coverage(batches, config, contiguous=contiguous), 3
                    ),
                    "max_width": config.max_width,
                    "max_coalitions": config.max_coalitions,
                    "coalitions_per_response": statistics.fmean(
                        r.coalitions / r.responses for r in records
                    ),
                    "unique_queries_per_step": statistics.fmean(r.unique_queries for r in records),
                    "service_ms_per_step_nocache": statistics.fmean(wall_ms),
                    "service_ms_per_step_in_training": in_training.get(label, math.nan),
                }
            )
        self.write_rows(
            "cost",
            rows,
            f"Cost per training step ({self.scale.prompts_per_step} prompts x G="
            f"{self.scale.group_size}; cache off on fixed batches)",
        )

    def _in_training_service_ms(self) -> dict[str, float]:
        """Mean `service_ms` of the cached arms and width runs (those already on disk or run)."""
        found: dict[str, float] = {}
        labelled = [(a, Arm(a, self.base_config(a))) for a in ARMS] + [
            (f"ospo-prop w={w}", Arm("", self.base_config(max_width=w))) for w in WIDTHS
        ]
        for label, arm in labelled:
            values = []
            for seed in self.seeds():
                saved = self.runs_dir / run_key(arm, seed) / "run.json"
                if saved.exists():
                    run = _load_run(saved)
                    values += [
                        float(r["service_ms"]) for r in run.rows[1:] if r["service_ms"] is not None
                    ]
            if values:
                found[label] = statistics.fmean(values)
        return found

    def smollm2_table(self) -> None:
        scale = self.scale
        arms = [
            Arm(
                advantage,
                TrainConfig(
                    advantage=advantage,
                    steps=scale.smollm2_steps,
                    group_size=scale.smollm2_group_size,
                    prompts_per_step=scale.smollm2_prompts,
                    max_width=4,
                    max_coalitions=8,
                    segmenter="phrase",
                    lr=1e-4,
                    eval_every=max(1, scale.smollm2_steps // 3),
                    eval_queries=scale.smollm2_eval_queries,
                ),
                policy="smollm2",
            )
            for advantage in ("grpo", "ospo-prop")
        ]
        seeds = list(range(scale.smollm2_seeds))
        results = self.runs(arms, seeds)
        self.write_table("smollm2", results, "SmolLM2-135M + LoRA: GRPO vs OSPO-PROP")

    # output
    def write_table(self, name: str, results: dict[str, list[RunResult]], title: str) -> None:
        best_final = max(statistics.fmean(r.final_ndcg for r in runs) for runs in results.values())
        reference = next(iter(results.values()))
        rows = []
        for label, runs in results.items():
            finals = [r.final_ndcg for r in runs]
            # Paired by seed against the table's first arm: same initial policy and prompts.
            paired_final = [
                r.final_ndcg - ref.final_ndcg for r, ref in zip(runs, reference, strict=True)
            ]
            paired_auc = [
                area_under_curve(r) - area_under_curve(ref)
                for r, ref in zip(runs, reference, strict=True)
            ]
            steps, curve = mean_curve(runs)
            reached = next(
                (s for s, v in zip(steps, curve, strict=True) if v >= 0.85 * best_final), None
            )
            rows.append(
                {
                    "arm": label,
                    "seeds": len(runs),
                    "steps": max(steps),
                    "initial_ndcg": _mean_std([r.initial_ndcg for r in runs]),
                    "final_ndcg": _mean_std(finals),
                    "steps_to_85pct_best": "not reached" if reached is None else reached,
                    "mean_ndcg_over_steps": _mean_std([area_under_curve(r) for r in runs]),
                    "final_minus_first_arm": _mean_std(paired_final),
                    "auc_minus_first_arm": _mean_std(paired_auc),
                    "within_group_reward_var": _mean_std(
                        [
                            statistics.fmean(s.within_group_reward_var for s in r.records)
                            for r in runs
                        ]
                    ),
                    "train_reward_last5": _mean_std(
                        [
                            statistics.fmean(float(row["mean_reward"]) for row in r.rows[1:][-5:])
                            for r in runs
                        ]
                    ),
                    "coalitions_per_response": round(
                        statistics.fmean(
                            s.coalitions / s.responses for r in runs for s in r.records
                        ),
                        2,
                    ),
                    "service_ms_per_step": round(
                        statistics.fmean(
                            float(row["service_ms"]) for r in runs for row in r.rows[1:]
                        ),
                        1,
                    ),
                    "wall_s_per_run": round(statistics.fmean(r.wall_s for r in runs), 1),
                    "final_ndcg_mean": statistics.fmean(finals),
                    "final_ndcg_std": statistics.stdev(finals) if len(finals) > 1 else 0.0,
                    "final_ndcg_per_seed": " ".join(f"{v:.3f}" for v in finals),
                }
            )
        self.write_rows(name, rows, title)
        self.write_curves(name, results)
        plot_curves(self.out_dir / f"{name}.png", results, title)

    def write_rows(self, name: str, rows: list[dict[str, Any]], title: str) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.out_dir / f"{name}.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows({k: _cell(v) for k, v in row.items()} for row in rows)
        shown = [k for k in rows[0] if not k.endswith(("_mean", "_std", "_per_seed"))]
        lines = [f"**{title}**", "", "| " + " | ".join(shown) + " |"]
        lines.append("|" + "---|" * len(shown))
        lines += ["| " + " | ".join(_cell(row[k]) for k in shown) + " |" for row in rows]
        (self.out_dir / f"{name}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
        sys.stdout.write("\n".join(lines) + "\n\n")

    def write_curves(self, name: str, results: dict[str, list[RunResult]]) -> None:
        with open(self.out_dir / f"{name}_curves.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["arm", "seed", "step", "heldout_ndcg", "mean_reward", "service_ms"])
            for label, runs in results.items():
                for run in runs:
                    for row in run.rows:
                        writer.writerow(
                            [
                                label,
                                run.seed,
                                row["step"],
                                _cell(row["heldout_ndcg"]),
                                _cell(row["mean_reward"]),
                                _cell(row["service_ms"]),
                            ]
                        )


def marginal_coverage(
    batches: Sequence[Sequence[Group]], config: TrainConfig, *, contiguous: bool
) -> float:
    """Share of segments i (over the responses of `batches`) for which the service's plan
    evaluates at least one pair (S, S∪{i}): the others get φ_i = 0 from the owen estimator.
    Replays the engine's plan: same segmenter, seed and coalition sampler."""
    import numpy as np

    from service.attribution import coalition_plan, coalition_seed, extract_query, segment

    covered = total = 0
    for group in (g for batch in batches for g in batch):
        for response in group.responses:
            start, end = extract_query(response.text, response.span)
            query = response.text[start:end]
            n = len(segment(query, config.segmenter)) if query else 0
            if n < 2:
                continue
            plan: set[frozenset[int]] = set(
                coalition_plan(
                    n,
                    estimator=config.estimator,
                    max_width=config.max_width,
                    max_coalitions=config.max_coalitions,
                    rng=np.random.default_rng(coalition_seed(config.seed, query)),
                    contiguous=contiguous,
                )
            ) | {frozenset()}
            covered += sum(
                any(i not in members and members | {i} in plan for members in plan)
                for i in range(n)
            )
            total += n
    return covered / total if total else math.nan


def area_under_curve(run: RunResult) -> float:
    """Mean held-out NDCG over the evaluated steps (step 0 included): sample efficiency."""
    return statistics.fmean(
        float(r["heldout_ndcg"]) for r in run.rows if r["heldout_ndcg"] is not None
    )


def mean_curve(runs: Sequence[RunResult]) -> tuple[list[int], list[float]]:
    """Evaluated steps and the mean held-out NDCG over runs at each of them."""
    steps, curves = _curves(runs)
    return steps, [statistics.fmean(c[i] for c in curves) for i in range(len(steps))]


def _curves(runs: Sequence[RunResult]) -> tuple[list[int], list[list[float]]]:
    steps = [int(r["step"]) for r in runs[0].rows if r["heldout_ndcg"] is not None]
    curves = [
        [float(r["heldout_ndcg"]) for r in run.rows if r["heldout_ndcg"] is not None]
        for run in runs
    ]
    return steps, curves


def plot_curves(path: Path, results: Mapping[str, Sequence[RunResult]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for label, runs in results.items():
        steps, curves = _curves(runs)
        mean = [statistics.fmean(c[i] for c in curves) for i in range(len(steps))]
        std = [
            statistics.stdev(c[i] for c in curves) if len(curves) > 1 else 0.0
            for i in range(len(steps))
        ]
        axes.plot(steps, mean, label=f"{label} (n={len(runs)})")
        axes.fill_between(
            steps,
            [m - s for m, s in zip(mean, std, strict=True)],
            [m + s for m, s in zip(mean, std, strict=True)],
            alpha=0.2,
        )
    axes.set_xlabel("training step")
    axes.set_ylabel("held-out NDCG (greedy query)")
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _mean_std(values: Sequence[float]) -> str:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.3f} ± {std:.3f}"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}".rstrip("0").rstrip(".")
    return str(value)


def _load_run(path: Path) -> RunResult:
    data = json.loads(path.read_text(encoding="utf-8"))
    data.pop("key_source", None)
    data["records"] = [StepRecord(**r) for r in data["records"]]
    return RunResult(**data)


def run_tables(study: Study, tables: Sequence[str]) -> None:
    actions: dict[str, Callable[[], None]] = {
        "arms": study.arms_table,
        "width": study.width_table,
        "contiguity": study.contiguity_table,
        "estimator": study.estimator_table,
        "cross-retriever": study.cross_retriever_table,
        "cost": study.cost_table,
        "smollm2": study.smollm2_table,
    }
    for table in tables:
        started = time.perf_counter()
        actions[table]()
        logger.info("table %s done in %.0f s", table, time.perf_counter() - started)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("tables", nargs="+", choices=(*TABLES, "all"), metavar="table")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per arm (default 5)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default 30)")
    parser.add_argument("--smoke", action="store_true", help="1 seed, 2 tiny steps per arm")
    parser.add_argument("--fresh", action="store_true", help="retrain runs found in --runs-dir")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "study")
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/ospo-study-data"))
    parser.add_argument("--runs-dir", type=Path, default=None, help="default <data-dir>/runs")
    parser.add_argument(
        "--cross-encoder",
        default="all-mpnet-base-v2",
        help="encoder of the cross retriever (the smoke test uses hash:256)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("httpx", "service.api.routes.attribute", "faiss.loader"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)
    scale = smoke_scale() if args.smoke else full_scale(args.seeds, args.steps)
    tables = list(TABLES) if "all" in args.tables else list(dict.fromkeys(args.tables))
    started = time.perf_counter()
    # The cross retriever's index (mpnet) is slow to build: host it only when it is used.
    cross_encoder = args.cross_encoder if "cross-retriever" in tables else None
    with local_service(args.data_dir, cross_encoder) as client:
        study = Study(
            client,
            scale,
            args.out,
            args.runs_dir or args.data_dir / "runs",
            fresh=args.fresh,
            smoke=args.smoke,
        )
        run_tables(study, tables)
    wall = time.perf_counter() - started
    machine = f"{platform.machine()} {os.cpu_count()} CPUs, Python {platform.python_version()}"
    sys.stdout.write(f"{' '.join(tables)}: {wall:.0f} s wall on {machine}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
