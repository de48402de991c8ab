"""Training (or reusing) the runs of a table, and evaluating stored policies.

``Runner.run(arm, seed)`` returns the stored run when its file exists, else trains it with
``experiments.train.loop.train`` against the invocation's service and stores it at once, so
an interrupted study loses at most the run in progress. ``--shard i/k`` lets k processes
split a table's missing runs between them (run j goes to process j mod k).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch

from experiments.study.arms import Arm, Table
from experiments.study.service import RecordingService
from experiments.study.store import Run, RunStore, identity, machine, run_key
from experiments.train.loop import TrainConfig, evaluate, split_queries, train

logger = logging.getLogger(__name__)


class Runner:
    def __init__(
        self,
        client: Any,
        url: str,
        store: RunStore,
        *,
        shard: tuple[int, int] = (0, 1),
        train_missing: bool = True,
        smollm2_new_tokens: int = 20,
        only_arms: Sequence[str] | None = None,
    ) -> None:
        from service.retrieval.demo import build_demo_catalog

        self.client = client
        self.url = url
        self.store = store
        self.shard = shard
        self.train_missing = train_missing
        self.smollm2_new_tokens = smollm2_new_tokens
        self.only_arms = set(only_arms) if only_arms else None
        self.catalog = build_demo_catalog()

    def table_runs(self, table: Table) -> dict[str, list[Run]]:
        """Every (arm, seed) of the table: stored, trained, or (another shard's, an arm not in
        ``only_arms``, or with ``train_missing`` off) left out. Arms keep the table's order, runs the seed order."""
        jobs = [(arm, seed) for seed in range(table.seeds) for arm in table.arms]
        found: dict[str, dict[int, Run]] = {arm.label: {} for arm in table.arms}
        index, count = self.shard
        for position, (arm, seed) in enumerate(jobs):
            run = self.store.load(run_key(arm, seed))
            wanted = self.only_arms is None or arm.label in self.only_arms
            if run is None and self.train_missing and wanted and position % count == index:
                run = self.train(arm, seed)
            if run is not None:
                found[arm.label][seed] = run
        return {label: [runs[s] for s in sorted(runs)] for label, runs in found.items()}

    def train(self, arm: Arm, seed: int) -> Run:
        key = run_key(arm, seed)
        config = replace(arm.config, seed=seed)
        logger.info("training %s", key)
        torch.manual_seed(seed)  # the initial weights: the same for every arm of a seed
        policy = self.policy(arm)
        recorder = RecordingService(self.client, self.url)
        started = time.perf_counter()
        trained = train(policy, recorder, self.catalog, config, None, progress=False)
        wall_s = time.perf_counter() - started
        run = Run(
            key=key,
            identity=identity(arm, seed),
            seed=seed,
            rows=trained.rows,
            records=recorder.records,
            initial_ndcg=trained.initial_ndcg,
            final_ndcg=trained.final_ndcg,
            wall_s=wall_s,
            machine=machine(),
        )
        if arm.policy == "tiny":
            self.store.weights_dir.mkdir(parents=True, exist_ok=True)
            torch.save(policy.model.state_dict(), self.store.weights(key))
        self.store.save(run)
        logger.info(
            "%s: held-out NDCG %.3f -> %.3f (mean %.3f) in %.0f s",
            key,
            run.initial_ndcg,
            run.final_ndcg,
            run.mean_heldout(),
            wall_s,
        )
        return run

    def policy(self, arm: Arm) -> Any:
        if arm.policy == "tiny":
            from experiments.train.policy_tiny import TinyPolicy

            return TinyPolicy.from_catalog(self.catalog)
        from experiments.train.policy_smollm2 import SmolLM2Config, SmolLM2Policy

        return SmolLM2Policy(SmolLM2Config(max_new_tokens=self.smollm2_new_tokens))

    def final_policy(self, run: Run) -> Any | None:
        """The stored final tiny policy of a run (None when its weights are not here)."""
        from experiments.train.policy_tiny import TinyPolicy

        path = self.store.weights(run.key)
        if not path.exists():
            return None
        policy = TinyPolicy.from_catalog(self.catalog)
        policy.model.load_state_dict(torch.load(path))
        return policy

    def untrained_policy(self, seed: int) -> Any:
        from experiments.train.policy_tiny import TinyPolicy

        torch.manual_seed(seed)
        return TinyPolicy.from_catalog(self.catalog)

    def heldout_ndcg(self, policy: Any, config: TrainConfig, retriever: str, seed: int) -> float:
        """Held-out NDCG of the policy's greedy queries under another retriever."""
        test_ids = split_queries(self.catalog)[1]
        if config.eval_queries:
            test_ids = test_ids[: config.eval_queries]
        scored = replace(config, retriever=retriever, seed=seed)
        return evaluate(policy, self.client, self.catalog, test_ids, scored)


def missing(store: RunStore, tables: Sequence[Table]) -> list[str]:
    return [
        run_key(arm, seed)
        for table in tables
        for seed in range(table.seeds)
        for arm in table.arms
        if store.load(run_key(arm, seed)) is None
    ]


__all__ = ["Runner", "missing"]
