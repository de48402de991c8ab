"""OspoGRPOTrainer across two processes (torch.distributed on CPU, gloo; real TRL and
accelerate): a group straddles the processes, only the main process calls the service (one
request per step holding every process's completions, grouped in global order), and each
process trains on the service's token advantages for its own completions."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow
if os.environ.get("CI", "").lower() == "true":
    import trl  # noqa: F401  (CI installs the TRL stack: a missing one is a failure)
else:
    pytest.importorskip("trl", reason="trl 1.16 is not installed (make install)")

WORKER = Path(__file__).resolve().parent / "_distributed_worker.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def ranks(
    live_service: str, llm_tokenizer: Any, tmp_path_factory: pytest.TempPathFactory
) -> list[dict[str, Any]]:
    root = tmp_path_factory.mktemp("distributed")
    tokenizer_dir = root / "tokenizer"
    llm_tokenizer.save_pretrained(str(tokenizer_dir))  # a fast tokenizer.json: quick to load
    done = subprocess.run(
        [
            sys.executable,
            "-W",
            "ignore",
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(free_port()),
            str(WORKER),
            live_service,
            str(tokenizer_dir),
            str(root),
        ],
        capture_output=True,
        text=True,
        timeout=540,
        env={"OMP_NUM_THREADS": "1", **_environ()},
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return [json.loads((root / f"rank{r}.json").read_text()) for r in range(2)]


def _environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}


def test_only_the_main_process_calls_the_service_once_per_step(ranks):
    main, other = ranks
    assert main["processes"] == other["processes"] == 2
    assert main["has_adapter"] and not other["has_adapter"]
    assert other["calls"] == []
    assert [c["seed"] for c in main["calls"]] == [10, 11]
    for call in main["calls"]:
        # 2 processes x 3 completions = 3 groups of 2, the middle one split across ranks
        assert [len(g) for g in call["groups"]] == [2, 2, 2]
        assert len(set(call["labels"])) == 3


def test_the_middle_group_straddles_the_processes(ranks):
    for k, call in enumerate(ranks[0]["calls"]):
        first, second = call["groups"][1]
        texts = [{r["text"] for r in rank["rows"][3 * k : 3 * k + 3]} for rank in ranks]
        assert first in texts[0] and second in texts[1]


def test_every_process_trains_on_the_service_advantages_of_its_completions(ranks):
    main, other = ranks
    answers = [call["answers"] for call in main["calls"]]
    for rank in ranks:
        assert len(rank["rows"]) == 6  # 3 completions per step, 2 steps
        for k, row in enumerate(rank["rows"]):
            step_answers = answers[k // 3]
            assert row["text"] in step_answers, f"rank {rank['rank']}: {row['text']!r}"
            assert row["advantages"] == pytest.approx(step_answers[row["text"]], abs=1e-5)
            assert row["outside"] == 0.0
    # both ranks trained on completions of the request, which held all six of them
    sent = [sorted(t for g in call["groups"] for t in g) for call in main["calls"]]
    for k in range(2):
        mine = sorted(r["text"] for rank in ranks for r in rank["rows"][3 * k : 3 * k + 3])
        assert mine == sent[k]


def test_the_step_metrics_reach_every_process(ranks):
    for rank in ranks:
        assert [e["ospo/groups"] for e in rank["logged"]] == [3.0, 3.0]
