"""The resumable run store: one small JSON file per finished run under docs/study/runs/.

A run's identity is everything that changes its result (the full trainer config with its
seed, and the policy), never the table that asked for it: tables that share a run (every
ablation's reference is the main OSPO-PROP arm) read the same file. The files are committed,
so every table is rebuilt from the repository and an interrupted study resumes elsewhere
without re-running finished runs. Weights are not part of a run file: the tiny policy's
final weights go under the data dir (``weights/<key>.pt``, out of git), for the
cross-retriever evaluation.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from experiments.study.arms import Arm

FORMAT = 1


@dataclass
class StepRecord:
    """What the service did for one training step (from its answer, or for the rewards-only
    GRPO arm from its /metrics counters)."""

    responses: int
    coalitions: int
    unique_queries: int
    cache_hits: int
    encoded: int
    service_ms: float
    unmeasured_share: float
    within_group_reward_var: float


@dataclass
class Run:
    key: str
    identity: dict[str, Any]
    seed: int
    rows: list[dict[str, Any]]
    """Per-step metrics (``experiments.train.loop.METRIC_FIELDS``); ``heldout_ndcg`` is set
    at the evaluated steps only (step 0 and every ``eval_every``)."""
    records: list[StepRecord]
    initial_ndcg: float
    final_ndcg: float
    wall_s: float
    machine: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    """Evaluations added after training (e.g. ``cross/<retriever>`` NDCG of the final policy)."""

    def curve(self) -> tuple[list[int], list[float]]:
        """Evaluated steps and the held-out NDCG at each."""
        pairs = [
            (int(r["step"]), float(r["heldout_ndcg"]))
            for r in self.rows
            if r.get("heldout_ndcg") is not None
        ]
        return [s for s, _ in pairs], [v for _, v in pairs]

    def mean_heldout(self) -> float:
        """Mean held-out NDCG over the evaluated steps (step 0 included): the area under the
        learning curve, i.e. sample efficiency."""
        values = self.curve()[1]
        return sum(values) / len(values)


def identity(arm: Arm, seed: int) -> dict[str, Any]:
    return {"policy": arm.policy, "config": asdict(replace(arm.config, seed=seed))}


def run_key(arm: Arm, seed: int) -> str:
    source = json.dumps(identity(arm, seed), sort_keys=True)
    digest = hashlib.sha256(source.encode()).hexdigest()[:10]
    c = arm.config
    return (
        f"{arm.policy}-{c.advantage}-w{c.max_width}-m{c.max_coalitions}-{c.estimator}-"
        f"{c.credit}-{c.negative}-{c.sampler}-t{c.steps}-s{seed}-{digest}"
    )


def machine() -> dict[str, Any]:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_at_end": load,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


class RunStore:
    def __init__(self, runs_dir: Path, weights_dir: Path) -> None:
        self.runs_dir = runs_dir
        self.weights_dir = weights_dir

    def path(self, key: str) -> Path:
        return self.runs_dir / f"{key}.json"

    def weights(self, key: str) -> Path:
        return self.weights_dir / f"{key}.pt"

    def load(self, key: str) -> Run | None:
        path = self.path(key)
        if not path.exists():
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        data.pop("format", None)
        data["records"] = [StepRecord(**r) for r in data["records"]]
        return Run(**data)

    def save(self, run: Run) -> Path:
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        data = {"format": FORMAT, **asdict(run)}
        data["rows"] = [{k: _compact(v) for k, v in row.items()} for row in data["rows"]]
        data["records"] = [{k: _compact(v) for k, v in r.items()} for r in data["records"]]
        path = self.path(run.key)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, separators=(",", ":")) + "\n", encoding="utf-8")
        tmp.replace(path)  # a reader never sees half a run
        return path


def _compact(value: Any) -> Any:
    """Six significant digits keep a run file small; metrics carry no more precision."""
    if isinstance(value, float):
        return float(f"{value:.6g}")
    return value


__all__ = ["Run", "RunStore", "StepRecord", "identity", "machine", "run_key"]
