"""The OSPO trainer modes on verl 0.9.1's real v1 ``PPOTrainer._compute_advantage`` and its
real ``register_adv_est`` registry, against the real service (service.api.local).

TransferQueue is replaced by an in-memory stand-in (conftest: Ray-actor storage out, TQ's own
batch packing kept); each trajectory is stored as verl's agent loop stores it
(``AgentLoopOutput.as_dict()`` plus the dataset row). The trainer is built from verl's own
Hydra config by ``get_trainer_cls(trainer.v1.trainer_mode)``, as verl's TaskRunner does.

The check (:func:`assert_service_advantages_written`): every row's nested advantages have the
row's response length; the text decoded at the positions that receive advantages is the
original response, which the service scored; the advantages there are the service's token
advantages; and each row's token mean is verl's own GRPO advantage for the row. A variant
that reads the responses one token off is caught.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import trainer_client as tc
from trainer_client.adapter import AdapterError, OspoAdapter

torch = pytest.importorskip("torch")

RESPONSES = {
    "demo-0000": [
        "<answer>cotton cardigan for women, cozy for cold evenings</answer>",
        "<answer>cardigan</answer>",
        "<think>she likes cotton</think><answer>warm cotton cardigan for my wife</answer>",
        "<answer>blue socks size 9</answer>",
    ],
    "demo-0001": [
        "<answer>white plastic coffee maker with built-in grinder</answer>",
        "<answer>kitchen gadget</answer>",
        "<answer>coffee grinder, white</answer>",
        "<answer>red rain jacket with hood</answer>",
    ],
}


class RecordingClient:
    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[tuple[list[tc.Group], Any, tc.AttributeResult]] = []

    def attribute(self, groups: Any, options: Any = None) -> tc.AttributeResult:
        groups = list(groups)
        result = self.inner.attribute(groups, options)
        self.calls.append((groups, options, result))
        return result


def store_rollouts(
    tq: Any, tokenizer: Any, url: str, labels: dict[str, Any], *, seed: int = 0
) -> tuple[list[str], dict[str, str]]:
    """Store one trajectory per response as verl's agent loop does; returns the keys
    (shuffled, as verl's batch balancing reorders rows) and each key's response text."""
    with tc.AttributionClient(url) as client:
        return _store_rollouts(tq, tokenizer, client, labels, seed)


def _store_rollouts(
    tq: Any, tokenizer: Any, client: tc.AttributionClient, labels: dict[str, Any], seed: int
) -> tuple[list[str], dict[str, str]]:
    from verl.experimental.agent_loop.agent_loop import AgentLoopMetrics, AgentLoopOutput

    eos = tokenizer.convert_tokens_to_ids(tokenizer.eos_token)
    keys, texts = [], {}
    for query_id, responses in RESPONSES.items():
        uid = str(uuid.uuid4())
        label = labels.get(query_id, query_id)
        prompt = f"<|im_start|>user\nWrite a product search query for {query_id}<|im_end|>\n"
        for session, text in enumerate(responses):
            ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [eos]
            try:
                reward = client.reward([text], [""], [str(label)]).rewards[0]
            except tc.ClientRequestError:
                reward = 0.0  # an unknown label: the reward function would score 0
            output = AgentLoopOutput(
                prompt_ids=tokenizer(prompt, add_special_tokens=False)["input_ids"],
                response_ids=ids,
                response_mask=[1] * len(ids),
                reward_score=reward,
                num_turns=2,
                metrics=AgentLoopMetrics(),
            )
            field = output.as_dict()
            field.update(
                {
                    "uid": uid,
                    "session_id": session,
                    "global_steps": 3,
                    "data_source": "ospo-demo",
                    "reward_model": {"ground_truth": label, "style": "rule"},
                    "extra_info": {"query_id": query_id},
                    "raw_prompt": [{"role": "user", "content": prompt}],
                }
            )
            field["loss_mask"] = field["response_mask"]
            key = f"{uid}_{session}_0"
            tq.put_row(key, field)
            keys.append(key)
            texts[key] = text
    random.Random(seed).shuffle(keys)
    return keys, texts


@pytest.fixture
def make_trainer(compose, live_service, smollm2_tokenizer) -> Iterator[Callable[..., Any]]:
    from verl.trainer.ppo.v1 import get_trainer_cls

    made: list[Any] = []

    def make(*overrides: str, mode: str = "ospo_sync", record: bool = True) -> Any:
        config = compose(
            "algorithm.adv_estimator=ospo",
            f"trainer.v1.trainer_mode={mode}",
            "actor_rollout_ref.rollout.n=4",
            f"+algorithm.ospo.url={live_service}",
            "+algorithm.ospo.segmenter=word",
            "+algorithm.ospo.seed=100",
            *overrides,
        )
        trainer = get_trainer_cls(config.trainer.v1.trainer_mode)(config)
        trainer.tokenizer = smollm2_tokenizer
        trainer.global_steps = 3
        if record:
            client = RecordingClient(tc.AttributionClient(live_service))
            trainer._ospo_adapter = OspoAdapter(trainer._ospo.adapter, client=client)
            trainer.recording = client
        made.append(trainer)
        return trainer

    yield make
    for trainer in made:  # every connection the trainers opened
        trainer.close_ospo()
        if getattr(trainer, "recording", None) is not None:
            trainer.recording.inner.close()


def compute_advantage(trainer: Any, keys: list[str]) -> dict[str, Any]:
    from transfer_queue import KVBatchMeta

    metrics: dict[str, Any] = {}
    batch = KVBatchMeta(keys=keys, tags=[{} for _ in keys], partition_id="train")
    trainer._compute_advantage(batch, metrics)
    return metrics


def verl_grpo(tq: Any, keys: list[str]) -> dict[str, float]:
    """verl's own GRPO advantage of each row (its registered/hard-coded estimator code)."""
    from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage

    rows = [tq.rows[("train", k)] for k in keys]
    width = max(len(r["rm_scores"]) for r in rows)
    scores = torch.zeros(len(rows), width)
    mask = torch.zeros(len(rows), width)
    for i, row in enumerate(rows):
        scores[i, : len(row["rm_scores"])] = row["rm_scores"]
        mask[i, : len(row["rm_scores"])] = 1
    index = [r["uid"] for r in rows]
    advantages, _ = compute_grpo_outcome_advantage(scores, mask, index)
    return {k: float(advantages[i, 0]) for i, k in enumerate(keys)}


def assert_service_advantages_written(
    tq: Any, keys: list[str], texts: dict[str, str], calls: list[Any], tokenizer: Any
) -> None:
    ((groups, _, result),) = calls
    answers: dict[str, list[tc.ResponseResult]] = {}
    for group, group_result in zip(groups, result.groups, strict=True):
        for response, answer in zip(group.responses, group_result.responses, strict=True):
            answers.setdefault(response.text, []).append(answer)
    grpo = verl_grpo(tq, keys)
    for key in keys:
        row = tq.rows[("train", key)]
        advantages, mask = row["advantages"], row["response_mask"].bool()
        assert advantages.shape == row["responses"].shape  # per-row length, not padded
        assert torch.equal(row["returns"], advantages)
        text = tokenizer.decode(row["responses"][mask].tolist(), skip_special_tokens=True)
        assert text == texts[key]
        assert text in answers, f"{key}: {text!r} was not scored"
        assert any(
            torch.allclose(advantages[mask], torch.tensor(a.token_advantages), atol=1e-5)
            for a in answers[text]
        ), f"{key}: {advantages.tolist()} vs the service's token advantages"
        # the token mean is Â, and Â is verl's own GRPO advantage of the row
        assert float(advantages.mean()) == pytest.approx(grpo[key], abs=1e-4)


def test_compute_advantage_writes_the_service_token_advantages(make_trainer, tq, smollm2_tokenizer):
    trainer = make_trainer()
    keys, texts = store_rollouts(tq, smollm2_tokenizer, trainer._ospo.adapter.url, {})
    metrics = compute_advantage(trainer, keys)
    calls = trainer.recording.calls
    assert_service_advantages_written(tq, keys, texts, calls, smollm2_tokenizer)
    lengths = {len(tq.rows[("train", k)]["advantages"]) for k in keys}
    assert len(lengths) > 2  # rows of different lengths
    assert any(len(set(tq.rows[("train", k)]["advantages"].tolist())) > 2 for k in keys)
    ((groups, options, _),) = calls
    assert options.seed == 103 and options.baseline == "group_norm"  # seed + global_steps
    assert [len(g.responses) for g in groups] == [4, 4]  # grouped by uid despite shuffling
    assert metrics["ospo/groups"] == 2.0 and metrics["ospo/fallback_groups"] == 0.0
    assert metrics["ospo/service_ms"] > 0 and metrics["ospo/mean_abs_adv"] > 0


def test_reading_the_responses_one_token_off_is_caught(
    make_trainer, tq, smollm2_tokenizer, monkeypatch
):
    from trainer_client.verl import rollouts

    def one_off(responses: Any, masks: Any) -> list[tuple[int, ...]]:
        return [
            tuple(int(t) for t in ids[mask.bool()].tolist()[1:]) + (int(ids[0]),)
            for ids, mask in zip(responses, masks, strict=True)
        ]

    monkeypatch.setattr(rollouts, "response_tokens", one_off)
    trainer = make_trainer()
    keys, texts = store_rollouts(tq, smollm2_tokenizer, trainer._ospo.adapter.url, {})
    compute_advantage(trainer, keys)
    with pytest.raises(AssertionError, match="was not scored"):
        assert_service_advantages_written(
            tq, keys, texts, trainer.recording.calls, smollm2_tokenizer
        )


def test_a_group_the_service_cannot_score_keeps_verl_grpo_advantages(
    make_trainer, tq, smollm2_tokenizer
):
    trainer = make_trainer("algorithm.norm_adv_by_std_in_grpo=False")
    labels = {"demo-0001": "no-such-query"}
    keys, _ = store_rollouts(tq, smollm2_tokenizer, trainer._ospo.adapter.url, labels)
    metrics = compute_advantage(trainer, keys)
    ((_, options, result),) = trainer.recording.calls
    assert options.baseline == "dr_grpo"
    assert [g.error.code for g in result.groups if g.error] == ["unknown_query"]
    assert metrics["ospo/fallback_groups"] == 1.0
    from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage

    failed = [
        k for k in keys if tq.rows[("train", k)]["reward_model"]["ground_truth"] != "demo-0000"
    ]
    for key in failed:
        row = tq.rows[("train", key)]
        scores = torch.stack([tq.rows[("train", k)]["rm_scores"].sum() for k in failed])
        own, _ = compute_grpo_outcome_advantage(
            scores.unsqueeze(1),
            torch.ones(len(failed), 1),
            ["g"] * len(failed),
            norm_adv_by_std_in_grpo=False,
        )
        expected = float(own[failed.index(key), 0])
        assert torch.allclose(row["advantages"], torch.full_like(row["advantages"], expected))


def test_the_trainer_mode_is_verl_s_own_mode_inside(make_trainer, verl_modules):
    from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer, ReplayBufferAsync

    sync = make_trainer(record=False)
    assert sync.trainer_mode == "sync" and sync.config.trainer.v1.trainer_mode == "sync"
    assert type(sync.replay_buffer) is ReplayBuffer
    v1, _ = verl_modules
    assert isinstance(sync, v1.PPOTrainerSync)
    assert issubclass(v1.get_trainer_cls("ospo_colocate_async"), v1.PPOTrainerColocateAsync)
    assert issubclass(v1.get_trainer_cls("ospo_separate_async"), v1.PPOTrainerSeparateAsync)
    colocate = make_trainer(mode="ospo_colocate_async", record=False)
    assert colocate.trainer_mode == "colocate_async"
    assert isinstance(colocate.replay_buffer, ReplayBufferAsync)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("algorithm.adv_estimator=grpo", "set algorithm.adv_estimator=ospo"),
        ("algorithm.use_kl_in_reward=True", "use_kl_in_reward=True is refused"),
        ("actor_rollout_ref.actor.policy_loss.loss_mode=geo_mean", "geo_mean is refused"),
        ("actor_rollout_ref.rollout.multi_turn.enable=True", "multi_turn.enable=True is refused"),
        ("+algorithm.ospo.no_such_key=1", "unknown key"),
    ],
)
def test_configurations_it_cannot_honour_are_refused(make_trainer, override, expected):
    with pytest.raises(AdapterError, match=expected):
        make_trainer(override, record=False)


def test_the_estimator_in_verl_s_registry_refuses_to_run_without_the_trainer(verl_modules):
    import numpy as np
    from verl.protocol import DataProto
    from verl.trainer.ppo.ray_trainer import compute_advantage

    _, core_algos = verl_modules
    from trainer_client.verl.estimator import ospo_advantage

    assert core_algos.get_adv_estimator_fn("ospo") is ospo_advantage
    data = DataProto.from_dict(
        tensors={
            "token_level_rewards": torch.zeros(2, 3),
            "response_mask": torch.ones(2, 3),
        },
        non_tensors={"uid": np.array(["a", "a"], dtype=object)},
    )
    with pytest.raises(AdapterError, match="trainer_mode set to one of ospo_sync"):
        compute_advantage(data, adv_estimator="ospo")


def test_step_wide_clipping_when_asked(make_trainer, tq, smollm2_tokenizer):
    trainer = make_trainer("+algorithm.ospo.clip=0.5")
    keys, texts = store_rollouts(tq, smollm2_tokenizer, trainer._ospo.adapter.url, {})
    metrics = compute_advantage(trainer, keys)
    bound = metrics["ospo/clip_bound"]
    ((groups, options, result),) = trainer.recording.calls
    assert options.clip is None  # the adapter clips over the step, not the service per request
    answers = {
        r.text: a
        for g, gr in zip(groups, result.groups, strict=True)
        for r, a in zip(g.responses, gr.responses, strict=True)
    }
    advantages = [a.advantage for a in answers.values()]
    mean = sum(advantages) / len(advantages)
    std = (sum((a - mean) ** 2 for a in advantages) / len(advantages)) ** 0.5
    assert bound == pytest.approx(0.5 * std)
    clamped = 0
    for key in keys:
        answer = answers[texts[key]]
        raw = torch.tensor(answer.token_advantages)
        # redistributed rows are clamped to the step's bound; plain-Â rows are left alone
        expected = raw.clamp(-bound, bound) if answer.redistributed else raw
        assert torch.allclose(tq.rows[("train", key)]["advantages"], expected, atol=1e-6)
        clamped += int(not torch.equal(expected, raw))
    assert clamped  # the clamp did something
