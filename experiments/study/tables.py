"""From runs to tables: one summary row per arm, one paired comparison per claim, and the
orchestration of an invocation (which service, which tables, in which order)."""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.study.arms import TRAINING_TABLES, Scale, Table, smollm2_table, tables
from experiments.study.stats import Paired, paired_bootstrap
from experiments.study.store import Run, RunStore

logger = logging.getLogger(__name__)


def _final(run: Run) -> float:
    return run.final_ndcg


def _mean(run: Run) -> float:
    return run.mean_heldout()


METRICS: dict[str, tuple[str, Callable[[Run], float]]] = {
    "final": ("final held-out NDCG", _final),
    "mean": ("mean held-out NDCG over training", _mean),
}


@dataclass(frozen=True)
class ComparisonRow:
    table: str
    arm: str
    reference: str
    metric: str
    claim: str
    paired: Paired
    expected_seeds: int


def summary_rows(table: Table, runs: Mapping[str, Sequence[Run]]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for arm in table.arms:
        arm_runs = runs.get(arm.label, [])
        if not arm_runs:
            rows.append({"arm": arm.label, "seeds": f"0/{table.seeds}"})
            continue
        records = [r for run in arm_runs for r in run.records]
        unique = sum(r.unique_queries for r in records)
        rows.append(
            {
                "arm": arm.label,
                "seeds": f"{len(arm_runs)}/{table.seeds}",
                "steps": arm.config.steps,
                "initial_ndcg": _mean_sd([r.initial_ndcg for r in arm_runs]),
                "final_ndcg": _mean_sd([r.final_ndcg for r in arm_runs]),
                "mean_ndcg_over_training": _mean_sd([r.mean_heldout() for r in arm_runs]),
                "train_reward_last10": _mean_sd(
                    [
                        statistics.fmean(float(x["mean_reward"]) for x in run.rows[1:][-10:])
                        for run in arm_runs
                    ]
                ),
                "coalitions_per_response": round(
                    sum(r.coalitions for r in records) / max(1, sum(r.responses for r in records)),
                    1,
                ),
                "unmeasured_segments": _share([r.unmeasured_share for r in records]),
                "service_ms_per_step": round(statistics.fmean(r.service_ms for r in records), 0),
                "cache_hit_rate": round(sum(r.cache_hits for r in records) / unique, 3)
                if unique
                else math.nan,
                "minutes_per_run": round(statistics.fmean(r.wall_s for r in arm_runs) / 60.0, 1),
            }
        )
    return rows


def comparisons(table: Table, runs: Mapping[str, Sequence[Run]]) -> list[ComparisonRow]:
    """Every comparison of the table on both metrics, over the seeds both arms have."""
    found = []
    for comparison in table.comparisons:
        arm = {r.seed: r for r in runs.get(comparison.arm, [])}
        reference = {r.seed: r for r in runs.get(comparison.reference, [])}
        seeds = sorted(set(arm) & set(reference))
        if not seeds:
            continue
        for metric, (_, value) in METRICS.items():
            found.append(
                ComparisonRow(
                    table=table.name,
                    arm=comparison.arm,
                    reference=comparison.reference,
                    metric=metric,
                    claim=comparison.claim,
                    paired=paired_bootstrap(
                        [value(arm[s]) for s in seeds],
                        [value(reference[s]) for s in seeds],
                        comparison.direction,
                    ),
                    expected_seeds=table.seeds,
                )
            )
    return found


def run_tables(
    names: Sequence[str],
    scale: Scale,
    *,
    out: Path,
    runs_dir: Path,
    data_dir: Path,
    shard: tuple[int, int],
    train_missing: bool,
    cross_encoder: str,
    only_arms: Sequence[str] | None = None,
) -> None:
    """Train what is missing and write every named table (one service for the lot; none
    when nothing is trained or measured: a rebuild reads the stored runs only)."""
    from experiments.study import report
    from experiments.study.runner import Runner
    from experiments.study.service import RetrieverEntry, local_service

    store = RunStore(runs_dir, data_dir / "weights")
    extra: list[RetrieverEntry] = []
    if "cross-retriever" in names:
        extra.append(RetrieverEntry("mpnet", cross_encoder))
        # Lexical: no encoder at all, the furthest a retriever can be from the training one.
        extra.append(RetrieverEntry("bm25", cross_encoder, 'kind = "bm25"\n'))
    all_tables = tables(scale)
    timings = report.load_timings(out)
    live = train_missing or "cost" in names
    with local_service(data_dir, extra) if live else nullcontext((None, "")) as (client, url):
        runner = Runner(
            client,
            url,
            store,
            shard=shard,
            train_missing=train_missing,
            smollm2_new_tokens=scale.smollm2_new_tokens,
            only_arms=only_arms,
        )
        for name in names:
            started = time.perf_counter()
            if name in TRAINING_TABLES or name == "smollm2":
                table = all_tables[name] if name != "smollm2" else smollm2_table(scale)
                runs = runner.table_runs(table)
                report.write_table(out, table, runs)
            elif name == "cross-retriever":
                from experiments.study.crossret import cross_retriever_table

                cross_retriever_table(runner, all_tables["main"], [e.name for e in extra], out)
            elif name == "cost":
                from experiments.study.cost import cost_table

                cost_table(runner, scale, all_tables, out)
            elapsed = time.perf_counter() - started
            # Training tables: the runs' own wall times; a rebuild measures nothing.
            if name not in TRAINING_TABLES and name != "smollm2" and live:
                timings[name] = round(elapsed / 60.0, 1)
            logger.info("table %s done in %.0f s", name, elapsed)
    if "main" in names or len(names) > 1:
        report.write_verdicts(out, all_tables, smollm2_table(scale), store)
    report.save_timings(out, timings)


def _mean_sd(values: Sequence[float]) -> str:
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.3f} ± {sd:.3f}"


def _share(values: Sequence[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return round(statistics.fmean(kept), 3) if kept else math.nan


__all__ = ["METRICS", "ComparisonRow", "comparisons", "run_tables", "summary_rows"]
