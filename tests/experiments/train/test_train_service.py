"""`python -m experiments.train --policy tiny` end to end against the real service on loopback: under every
advantage mode a few dozen steps beat the untrained policy on held-out requests, and a second
run with the same seed writes the same metrics."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from experiments.train.cli import build_parser, main

MODES = ("grpo", "ospo-prop", "ospo-rank")
STEPS = 20
TRAIN_ARGS = [
    "--policy", "tiny", "--steps", str(STEPS), "--seed", "0",
    "--group-size", "8", "--prompts-per-step", "4", "--max-width", "4", "--max-coalitions", "8",
    "--eval-every", str(STEPS), "--no-progress",
]  # fmt: skip


def _train(url: str, mode: str, out: Path) -> dict[str, object]:
    assert main([*TRAIN_ARGS, "--advantage", mode, "--url", url, "--out", str(out)]) == 0
    summary: dict[str, object] = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    return summary


def _metrics(out: Path) -> list[dict[str, str]]:
    with open(out / "metrics.csv", newline="", encoding="utf-8") as fh:
        return [
            {k: v for k, v in row.items() if not k.endswith("_ms")} for row in csv.DictReader(fh)
        ]


@pytest.fixture(scope="module")
def runs(service_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("train-runs")
    for mode in MODES:
        _train(service_url, mode, root / mode)
    return {mode: root / mode for mode in MODES}


@pytest.mark.parametrize("mode", MODES)
def test_training_beats_the_untrained_policy(runs: dict[str, Path], mode: str) -> None:
    summary = json.loads((runs[mode] / "summary.json").read_text(encoding="utf-8"))
    assert summary["config"]["advantage"] == mode
    assert summary["heldout_queries"] > 20
    initial, final = summary["initial_heldout_ndcg"], summary["final_heldout_ndcg"]
    assert final > initial + 0.05, f"{mode}: held-out NDCG {initial:.4f} -> {final:.4f}"
    rows = _metrics(runs[mode])
    assert len(rows) == STEPS + 1
    assert all(0.0 <= float(r["mean_reward"]) <= 1.0 for r in rows[1:])
    assert (runs[mode] / "tiny_policy.pt").exists()


@pytest.mark.parametrize("mode", MODES)
def test_same_seed_gives_the_same_metrics(
    runs: dict[str, Path], mode: str, service_url: str, tmp_path: Path
) -> None:
    _train(service_url, mode, tmp_path / "again")
    assert _metrics(tmp_path / "again") == _metrics(runs[mode])


def test_the_modes_train_differently(runs: dict[str, Path]) -> None:
    # Same prompts and sampling seed: only the service's token advantages differ.
    firsts = [_metrics(runs[mode])[1] for mode in MODES]
    assert len({row["mean_reward"] for row in firsts}) == 1
    finals = {mode: _metrics(runs[mode])[-1]["heldout_ndcg"] for mode in MODES}
    assert len(set(finals.values())) == len(MODES), finals


def test_train_is_an_ospo_subcommand_with_the_documented_options() -> None:
    parser = build_parser()
    args = parser.parse_args(["--advantage", "ospo-rank", "--max-width", "6", "--lr", "0.01"])
    assert (args.policy, args.advantage, args.max_width, args.lr) == ("tiny", "ospo-rank", 6, 0.01)
    with pytest.raises(SystemExit):
        parser.parse_args(["--advantage", "ppo"])
