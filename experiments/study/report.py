"""Writing tables: markdown and CSV per table, the learning-curve plot (mean per arm with a
±1 sd band over seeds), the forest plot of paired differences, and verdicts.md (every
comparison of every table with its verdict under the pre-stated rule)."""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from experiments.study.arms import Table
from experiments.study.stats import MARGIN
from experiments.study.store import Run, RunStore, run_key
from experiments.study.tables import METRICS, ComparisonRow, comparisons, summary_rows

TIMINGS = "timings.json"


def write_table(out: Path, table: Table, runs: Mapping[str, Sequence[Run]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rows = summary_rows(table, runs)
    compared = comparisons(table, runs)
    _write_csv(out / f"{table.name}.csv", rows)
    machine_min = sum(r.wall_s for arm_runs in runs.values() for r in arm_runs) / 60.0
    lines = [f"**{table.title}**", ""]
    lines += markdown(rows)
    if compared:
        lines += ["", *comparison_markdown(compared)]
    lines += [
        "",
        f"Training machine time of these runs: {machine_min:.0f} min "
        "(sum of run wall times; runs shared with other tables are counted in each).",
    ]
    if table.note:
        lines += ["", table.note]
    (out / f"{table.name}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if any(runs.values()):
        plot_curves(out / f"{table.name}.png", runs, table.title)
    if compared:
        plot_forest(out / f"{table.name}_forest.png", compared, table.title)


def markdown(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(k)) for k in columns) + " |" for row in rows]
    return lines


def comparison_markdown(rows: Sequence[ComparisonRow]) -> list[str]:
    lines = [
        "| comparison | metric | seeds | paired Δ (mean) | 95 % CI | seeds in the claim's "
        "direction | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        p = row.paired
        seeds = f"{p.n}" + ("" if p.n == row.expected_seeds else f" of {row.expected_seeds}")
        lines.append(
            f"| {row.arm} − {row.reference} | {METRICS[row.metric][0]} | {seeds} | "
            f"{p.mean:+.3f} | [{p.low:+.3f}, {p.high:+.3f}] | {p.better}/{p.n} | "
            f"{_verdict(row)} |"
        )
    return lines


def _verdict(row: ComparisonRow) -> str:
    v = row.paired.verdict()
    return v if row.paired.n == row.expected_seeds else f"{v} (partial: {row.paired.n} seeds)"


def write_verdicts(
    out: Path, all_tables: Mapping[str, Table], smollm2: Table, store: RunStore
) -> None:
    """verdicts.md: every comparison of every table whose runs are stored."""
    lines = [
        "**Every paired comparison** (Δ = arm − reference per seed; 95 % percentile bootstrap "
        f"over seeds; margin {MARGIN}; rule at the top of docs/STUDY.md)",
        "",
        "| table | claim | comparison | metric | seeds | Δ | 95 % CI | in direction | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for table in [*all_tables.values(), smollm2]:
        runs = stored_runs(store, table)
        for row in comparisons(table, runs):
            p = row.paired
            lines.append(
                f"| {table.name} | {row.claim} | {row.arm} − {row.reference} | {row.metric} | "
                f"{p.n} | {p.mean:+.3f} | [{p.low:+.3f}, {p.high:+.3f}] | {p.better}/{p.n} | "
                f"{_verdict(row)} |"
            )
    (out / "verdicts.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def stored_runs(store: RunStore, table: Table) -> dict[str, list[Run]]:
    found: dict[str, list[Run]] = {}
    for arm in table.arms:
        runs = [store.load(run_key(arm, seed)) for seed in range(table.seeds)]
        found[arm.label] = [r for r in runs if r is not None]
    return found


def plot_curves(path: Path, runs: Mapping[str, Sequence[Run]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for label, arm_runs in runs.items():
        if not arm_runs:
            continue
        steps = arm_runs[0].curve()[0]
        curves = [r.curve()[1] for r in arm_runs if r.curve()[0] == steps]
        mean = [statistics.fmean(c[i] for c in curves) for i in range(len(steps))]
        sd = [
            statistics.stdev(c[i] for c in curves) if len(curves) > 1 else 0.0
            for i in range(len(steps))
        ]
        axes.plot(steps, mean, label=f"{label} (n={len(curves)})")
        axes.fill_between(
            steps,
            [m - s for m, s in zip(mean, sd, strict=True)],
            [m + s for m, s in zip(mean, sd, strict=True)],
            alpha=0.2,
        )
    axes.set_xlabel("training step")
    axes.set_ylabel("held-out NDCG (greedy query)")
    axes.set_title(title + "\nmean over seeds, band ±1 sd", fontsize=9)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def plot_forest(path: Path, rows: Sequence[ComparisonRow], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 0.9 + 0.42 * len(rows)), dpi=110)
    labels = []
    for y, row in enumerate(reversed(rows)):
        p = row.paired
        verdict = p.verdict()
        color = {"holds": "tab:green", "does not hold": "tab:red"}.get(verdict, "tab:gray")
        axes.errorbar(
            p.mean, y, xerr=[[p.mean - p.low], [p.high - p.mean]], fmt="o", color=color, capsize=3
        )
        labels.append(f"{row.arm} − {row.reference}\n{METRICS[row.metric][0]} (n={p.n})")
    axes.axvline(0.0, color="black", linewidth=0.8)
    axes.set_yticks(range(len(rows)), labels, fontsize=7)
    axes.set_xlabel("paired difference in held-out NDCG (95 % bootstrap CI)")
    axes.set_title(title, fontsize=9)
    axes.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def write_rows(
    out: Path, name: str, title: str, rows: Sequence[Mapping[str, Any]], notes: Sequence[str] = ()
) -> None:
    """A table that is not made of training runs (cross-retriever, cost)."""
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(out / f"{name}.csv", rows)
    lines = [f"**{title}**", ""]
    lines += markdown(rows) if rows else ["Not run yet: nothing for this table is stored."]
    if notes:
        lines += ["", *notes]
    (out / f"{name}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def load_timings(out: Path) -> dict[str, float]:
    path = out / TIMINGS
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def save_timings(out: Path, timings: Mapping[str, float]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / TIMINGS).write_text(json.dumps(dict(timings), indent=1, sort_keys=True) + "\n")


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows({k: _cell(row.get(k)) for k in columns} for row in rows)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value)


__all__ = [
    "load_timings",
    "plot_curves",
    "plot_forest",
    "save_timings",
    "stored_runs",
    "write_rows",
    "write_table",
    "write_verdicts",
]
