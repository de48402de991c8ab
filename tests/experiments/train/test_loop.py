"""The training loop against the in-process fake scorer: it learns, it writes the metrics
CSV, and it is reproducible under a seed."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from experiments.train.loop import METRIC_FIELDS, TrainConfig, build_groups, split_queries, train
from experiments.train.policy_tiny import TinyPolicy
from service.retrieval.catalog import Catalog


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _deterministic(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in row.items() if not k.endswith("_ms")} for row in rows]


@pytest.mark.parametrize("advantage", ["grpo", "ospo-prop", "ospo-rank"])
def test_training_improves_the_held_out_reward(
    advantage: str, demo_catalog: Catalog, fake_scorer: object, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    policy = TinyPolicy.from_catalog(demo_catalog)
    config = TrainConfig(
        advantage=advantage, steps=20, group_size=8, prompts_per_step=4, eval_every=20
    )
    result = train(policy, fake_scorer, demo_catalog, config, tmp_path, progress=False)  # type: ignore[arg-type]
    assert result.final_ndcg > result.initial_ndcg + 0.1
    rows = _read(tmp_path / "metrics.csv")
    assert list(rows[0]) == list(METRIC_FIELDS)
    assert [int(r["step"]) for r in rows] == list(range(21))
    assert float(rows[0]["heldout_ndcg"]) == pytest.approx(result.initial_ndcg, abs=1e-6)
    assert float(rows[-1]["heldout_ndcg"]) == pytest.approx(result.final_ndcg, abs=1e-6)
    assert all(rows[i]["heldout_ndcg"] == "" for i in range(1, 20))
    assert all(float(r["mean_length"]) >= 1 for r in rows[1:])
    assert (tmp_path / "summary.json").exists()


def test_same_seed_same_metrics_other_seed_other_metrics(
    demo_catalog: Catalog, fake_scorer: object, tmp_path: Path
) -> None:
    def run(seed: int, out: Path) -> list[dict[str, str]]:
        torch.manual_seed(1234)  # the loop must not depend on the global state it finds
        policy = TinyPolicy.from_catalog(demo_catalog)
        config = TrainConfig(
            advantage="ospo-prop",
            steps=6,
            seed=seed,
            group_size=4,
            prompts_per_step=3,
            eval_every=3,
        )
        train(policy, fake_scorer, demo_catalog, config, out, progress=False)  # type: ignore[arg-type]
        return _deterministic(_read(out / "metrics.csv"))

    first = run(7, tmp_path / "a")
    assert first == run(7, tmp_path / "b")
    assert first != run(8, tmp_path / "c")


def test_the_service_is_asked_with_the_mode_and_the_policy_tokens(
    demo_catalog: Catalog, fake_scorer: object
) -> None:
    config = TrainConfig(
        advantage="ospo-rank", seed=3, max_width=5, max_coalitions=20, retriever="r1"
    )
    options = config.options()
    assert (options.redistribution, options.baseline, options.seed) == ("rank", "group_norm", 3)
    # Step s sends seed + s: the coalition sample is not frozen for the run.
    assert [config.options(step).seed for step in (1, 2, 3)] == [4, 5, 6]
    assert (options.max_width, options.max_coalitions, options.retriever) == (5, 20, "r1")
    assert TrainConfig(advantage="grpo").options().redistribution == "uniform"
    assert config.eval_options().max_coalitions == 2
    # Held-out scoring must stay servable whatever the training estimator.
    assert TrainConfig(estimator="myerson").eval_options().estimator == "owen"

    policy = TinyPolicy.from_catalog(demo_catalog)
    train_ids, test_ids = split_queries(demo_catalog)
    assert set(train_ids).isdisjoint(test_ids) and train_ids and test_ids
    rollouts = policy.sample(
        [demo_catalog.queries[q] for q in train_ids[:2]], 3, torch.Generator().manual_seed(0)
    )
    groups = build_groups(4, train_ids[:2], [rollouts[:3], rollouts[3:]])
    assert [g.id for g in groups] == [f"step4/{q}" for q in train_ids[:2]]
    assert [g.target.query_id for g in groups] == train_ids[:2]
    assert [list(r.token_offsets or []) for g in groups for r in g.responses] == [
        list(r.token_offsets) for r in rollouts
    ]


@pytest.mark.parametrize(
    ("field", "value"),
    [("advantage", "ppo"), ("steps", 0), ("group_size", 0), ("max_coalitions", 1)],
)
def test_bad_configs_are_refused(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field if field != "advantage" else "advantage must be"):
        TrainConfig(**{field: value})  # type: ignore[arg-type]


class _Recording:
    """Wraps the fake scorer and records which endpoint each training step used."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.seeds: list[int | None] = []
        self.attribute_groups: list[str] = []
        self.reward_batches = 0

    def attribute(self, groups, options=None):  # type: ignore[no-untyped-def]
        if not groups[0].id.startswith("eval/"):
            self.seeds.append(options.seed if options else None)
            self.attribute_groups.append(groups[0].id)
        return self.inner.attribute(groups, options)  # type: ignore[attr-defined]

    def reward(self, queries, prompts, labels):  # type: ignore[no-untyped-def]
        self.reward_batches += 1
        return self.inner.reward(queries, prompts, labels)  # type: ignore[attr-defined]


def test_ospo_steps_send_a_per_step_seed(demo_catalog: Catalog, fake_scorer: object) -> None:
    recording = _Recording(fake_scorer)
    config = TrainConfig(advantage="ospo-prop", steps=3, seed=10, group_size=2, prompts_per_step=2)
    train(TinyPolicy.from_catalog(demo_catalog), recording, demo_catalog, config, progress=False)  # type: ignore[arg-type]
    assert recording.seeds == [11, 12, 13]
    assert recording.reward_batches == 0


def test_grpo_steps_ask_for_rewards_only(demo_catalog: Catalog, fake_scorer: object) -> None:
    recording = _Recording(fake_scorer)
    config = TrainConfig(advantage="grpo", steps=3, seed=0, group_size=4, prompts_per_step=2)
    train(TinyPolicy.from_catalog(demo_catalog), recording, demo_catalog, config, progress=False)  # type: ignore[arg-type]
    assert recording.reward_batches == 3
    assert recording.attribute_groups == []  # held-out scoring only


def test_grpo_advantages_equal_the_services_uniform_ones(
    demo_catalog: Catalog, fake_scorer: object
) -> None:
    from experiments.train.grpo import sample_groups
    from experiments.train.loop import _grpo_step

    policy = TinyPolicy.from_catalog(demo_catalog)
    ids = split_queries(demo_catalog)[0][:2]
    groups = sample_groups(
        policy, [demo_catalog.queries[q] for q in ids], 4, torch.Generator().manual_seed(0)
    )
    rewards, advantages = _grpo_step(fake_scorer, ids, groups, "group_norm")  # type: ignore[arg-type]
    answer = fake_scorer.attribute(  # type: ignore[attr-defined]
        build_groups(1, ids, groups), TrainConfig(advantage="grpo").options(1)
    )
    assert rewards == pytest.approx([r.reward for r in answer.responses])
    for mine, theirs in zip(advantages, answer.responses, strict=True):
        assert mine.tolist() == pytest.approx(list(theirs.token_advantages), abs=1e-5)
