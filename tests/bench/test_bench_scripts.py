"""The benchmark scripts still run as documented (`python bench/<name>.py`), on tiny settings.
They measure; these tests only keep them working and check their output has the ratio rows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_script(*args: str, timeout: float = 600) -> str:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    done = subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_core_benchmark_runs_and_prints_ratios() -> None:
    out = run_script("bench/core.py", "--runs", "3")
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line and line[0] != "#"}
    assert {"case", "owen_values", "group_G8"} <= set(rows)
    assert float(rows["group_G8"][-1]) > 0  # ratio = baseline / ours


def test_service_benchmark_runs_on_one_group(tmp_path: Path) -> None:
    data_dir = os.environ.get("OSPO_TEST_DATA_DIR") or str(tmp_path)
    out = run_script(
        "bench/request_path.py",
        "--groups",
        "1",
        "--repeat",
        "1",
        "--data-dir",
        data_dir,
        timeout=900,
    )
    assert "cold" in out and "naive" in out and "warm" in out
