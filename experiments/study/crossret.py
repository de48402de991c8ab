"""Cross-retriever robustness: the main arms' final policies (trained against MiniLM) scored on
the same held-out requests by other retrievers.

Each evaluation is written back into its run file (``extra["heldout/<retriever>"]``), so the
table is rebuilt from the repository without the weights, which stay on the machine that
trained them. The untrained policy of each seed is the floor.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from experiments.study import report
from experiments.study.arms import Table
from experiments.study.runner import Runner
from experiments.study.stats import paired_bootstrap
from experiments.study.store import Run


def evaluate_cross(runner: Runner, table: Table, retrievers: Sequence[str]) -> dict[str, list[Run]]:
    """The main table's stored runs, each with its cross-retriever evaluations (computed and
    stored when missing and the weights are here)."""
    runs = report.stored_runs(runner.store, table)
    for arm in table.arms:
        for run in runs[arm.label]:
            # "default" too: the loaded policy's own NDCG under the training retriever, so a
            # policy whose weights were regenerated is compared with itself, not with the run.
            todo = [r for r in ("default", *retrievers) if f"heldout/{r}" not in run.extra]
            if not todo or runner.client is None:
                continue
            policy = runner.final_policy(run)
            if policy is None:
                continue
            for retriever in todo:
                run.extra[f"heldout/{retriever}"] = runner.heldout_ndcg(
                    policy, arm.config, retriever, run.seed
                )
            if "untrained/default" not in run.extra:
                untrained = runner.untrained_policy(run.seed)
                for retriever in ("default", *retrievers):
                    run.extra[f"untrained/{retriever}"] = runner.heldout_ndcg(
                        untrained, arm.config, retriever, run.seed
                    )
            runner.store.save(run)
    return runs


def cross_retriever_table(
    runner: Runner, table: Table, retrievers: Sequence[str], out: Path
) -> None:
    runs = evaluate_cross(runner, table, retrievers)
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    grpo = {r.seed: r for r in runs.get("grpo", [])}
    for retriever in retrievers:
        key = f"heldout/{retriever}"
        for label, arm_runs in [("untrained", runs.get("grpo", [])), *runs.items()]:
            scored = [r for r in arm_runs if key in r.extra]
            if not scored:
                continue
            cross_key = f"untrained/{retriever}" if label == "untrained" else key
            own = [
                _own(r) if label != "untrained" else r.extra["untrained/default"] for r in scored
            ]
            cross = [r.extra[cross_key] for r in scored]
            drops = [100.0 * (a - b) / a if a > 0 else 0.0 for a, b in zip(own, cross, strict=True)]
            rows.append(
                {
                    "retriever": retriever,
                    "arm": label,
                    "seeds": len(scored),
                    "minilm_ndcg": _mean_sd(own),
                    f"{retriever}_ndcg": _mean_sd(cross),
                    "relative_drop_pct": _mean_sd(drops),
                }
            )
        for label in ("ospo-prop", "ospo-rank"):
            paired = [r for r in runs.get(label, []) if key in r.extra and r.seed in grpo]
            paired = [r for r in paired if key in grpo[r.seed].extra]
            if len(paired) < 2:
                continue
            ndcg = paired_bootstrap(
                [r.extra[key] for r in paired], [grpo[r.seed].extra[key] for r in paired]
            )
            # Positive: the OSPO policy loses less (relative) than GRPO's when the retriever changes.
            kept = paired_bootstrap(
                [_kept(r, key) for r in paired], [_kept(grpo[r.seed], key) for r in paired]
            )
            notes.append(
                f"- {retriever}, {label} − grpo: held-out NDCG {ndcg.mean:+.3f} "
                f"[{ndcg.low:+.3f}, {ndcg.high:+.3f}] ({ndcg.better}/{ndcg.n} seeds, "
                f"**{ndcg.verdict()}**); share of the MiniLM NDCG kept {kept.mean:+.3f} "
                f"[{kept.low:+.3f}, {kept.high:+.3f}] ({kept.better}/{kept.n} seeds, "
                f"**{kept.verdict()}**)"
            )
    report.write_rows(
        out,
        "cross-retriever",
        "Cross-retriever: train against MiniLM, score the final policies with another retriever",
        rows,
        ["Paired against GRPO, 95 % bootstrap CI over seeds:", *notes] if notes else [],
    )


def _own(run: Run) -> float:
    """The final policy's held-out NDCG under the training retriever, as evaluated from the
    weights that were scored (the run's own final NDCG when that evaluation is not stored)."""
    return float(run.extra.get("heldout/default", run.final_ndcg))


def _kept(run: Run, key: str) -> float:
    """Cross-retriever NDCG as a share of the training retriever's."""
    own = _own(run)
    return float(run.extra[key]) / own if own > 0 else 0.0


def _mean_sd(values: Sequence[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.3f} ± {sd:.3f}"


__all__ = ["cross_retriever_table", "evaluate_cross"]
