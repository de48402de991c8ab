"""The price of OSPO over GRPO: service time per training step per arm, with the score cache
off (measured here on fixed batches, so every arm pays full price) and on (from the stored
runs: what a real run paid, and its cache hit rate).

Cache off: every arm is asked about the same batches, sampled from the untrained policy and
from the final main OSPO-PROP policy of seed 0 (late-training queries are longer). ``/reward``
has no cache switch, so the GRPO row's cache-off price is ``/attribute`` with the
reward-only plan (∅ and N, ``uniform``): the same work, one retrieval per response.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from experiments.study import report
from experiments.study.arms import Scale, Table
from experiments.study.runner import Runner
from experiments.train.loop import build_groups, split_queries
from trainer_client import Group

COST_TABLES = ("main", "budget")
"""The arms priced: the main ones and the budget sweep (the other ablations cost what the main
OSPO-PROP arm costs, apart from narrower widths and random subsets, which make fewer or
different partial queries)."""


def _batches(runner: Runner, policy: Any, scale: Scale) -> list[list[Group]]:
    train_ids = split_queries(runner.catalog)[0]
    generator = torch.Generator().manual_seed(0)
    batches = []
    for b in range(scale.cost_batches):
        ids = train_ids[b * scale.prompts_per_step : (b + 1) * scale.prompts_per_step]
        rollouts = policy.sample(
            [runner.catalog.queries[q] for q in ids], scale.group_size, generator
        )
        groups = [
            rollouts[i * scale.group_size : (i + 1) * scale.group_size] for i in range(len(ids))
        ]
        batches.append(build_groups(b, ids, groups))
    return batches


def cost_table(runner: Runner, scale: Scale, tables: Mapping[str, Table], out: Path) -> None:
    sources = [("untrained", runner.untrained_policy(0))]
    reference = report.stored_runs(runner.store, tables["main"]).get("ospo-prop", [])
    trained = runner.final_policy(reference[0]) if reference else None
    if trained is not None:
        sources.append(("trained (main PROP, seed 0)", trained))
    arms = []
    for name in COST_TABLES:
        for arm in tables[name].arms:
            label = arm.label if name == "main" else f"{name}: {arm.label}"
            if name != "main" and arm.label == "ospo-prop":
                continue
            arms.append((label, arm, report.stored_runs(runner.store, tables[name])[arm.label]))
    rows: list[dict[str, Any]] = []
    for label, arm, runs in arms:
        row: dict[str, Any] = {
            "arm": label,
            "w": arm.config.max_width,
            "M": arm.config.max_coalitions,
        }
        if arm.config.rewards_only:
            row.update(w="", M="reward only")
        for source, policy in sources:
            batches = _batches(runner, policy, scale)
            options = replace(arm.config.options(1), cache=False)
            if arm.config.rewards_only:
                options = replace(options, max_width=1, max_coalitions=2, redistribution="uniform")
            wall, queries = [], []
            for batch in batches:
                started = time.perf_counter()
                result = runner.client.attribute(batch, options)
                wall.append((time.perf_counter() - started) * 1000.0)
                queries.append(result.stats.unique_queries)
            row[f"ms/step cache off, {source}"] = round(statistics.fmean(wall))
            row[f"partial queries/step, {source}"] = round(statistics.fmean(queries))
        records = [r for run in runs for r in run.records]
        if records:
            unique = sum(r.unique_queries for r in records)
            row["ms/step in training (cache on)"] = round(
                statistics.fmean(r.service_ms for r in records)
            )
            row["cache hit rate over the runs"] = (
                round(sum(r.cache_hits for r in records) / unique, 3) if unique else ""
            )
            row["runs"] = len(runs)
        rows.append(row)
    grpo = next((r for r in rows if r["arm"] == "grpo"), None)
    if grpo is not None:
        for row in rows:
            for column in [c for c in grpo if c.startswith("ms/step")]:
                if row.get(column) and grpo.get(column):
                    row[f"× grpo ({column.removeprefix('ms/step ')})"] = round(
                        row[column] / grpo[column], 1
                    )
    report.write_rows(
        out,
        "cost",
        f"Service cost per training step ({scale.prompts_per_step} requests × G="
        f"{scale.group_size}; cache off on {scale.cost_batches} fixed batches, cache on from the runs)",
        rows,
    )


__all__ = ["cost_table"]
