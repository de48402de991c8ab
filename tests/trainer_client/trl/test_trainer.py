"""OspoGRPOTrainer in real TRL 1.16 GRPO training on CPU (a tiny randomly initialised Llama,
SmolLM2's tokenizer) against the real service (service.api.local on loopback).

The acceptance check (:func:`assert_service_advantages_reach_the_loss`): for every row that
reaches ``_compute_loss``, the text decoded at the positions that receive advantages (its
``completion_mask``) is a completion the service scored in that step, the advantages there are
that completion's token advantages from the service, and 0 elsewhere; and the texts sent are
TRL's own completions. A variant that reads the completions one token off is caught.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest

import trainer_client as tc
from trainer_client.adapter import AdapterError, AdapterSettings, FailurePolicy

torch = pytest.importorskip("torch")
if os.environ.get("CI", "").lower() == "true":
    import trl  # noqa: F401  (CI installs the TRL stack: a missing one is a failure)
else:
    pytest.importorskip("trl", reason="trl 1.16 is not installed (make install)")

from trainer_client.trl import OspoReward, check_trl_version  # noqa: E402
from trainer_client.trl import trainer as trl_trainer  # noqa: E402

PROMPTS = [
    {"prompt": "Write a product search query: something cozy, a cardigan", "label": "demo-0000"},
    {"prompt": "Write a product search query: the second demo request", "label": "demo-0001"},
]


def decode(tokenizer: Any, ids: list[int]) -> str:
    return str(tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False))


def assert_service_advantages_reach_the_loss(run: Any, tokenizer: Any) -> None:
    assert run.client is not None
    assert len(run.loss_inputs) == len(run.client.calls)  # one generation per step here
    for step, (inputs, (groups, _, result)) in enumerate(
        zip(run.loss_inputs, run.client.calls, strict=True)
    ):
        answers: dict[str, list[tuple[float, ...]]] = {}
        for group, group_result in zip(groups, result.groups, strict=True):
            for response, answer in zip(group.responses, group_result.responses, strict=True):
                answers.setdefault(response.text, []).append(answer.token_advantages)
        advantages = inputs["advantages"]
        assert advantages.shape == inputs["completion_ids"].shape  # (B_local, T), per token
        for i in range(advantages.shape[0]):
            mask = inputs["completion_mask"][i].bool()
            text = decode(tokenizer, inputs["completion_ids"][i][mask].tolist())
            assert text in answers, f"step {step} row {i}: {text!r} was not scored"
            got = advantages[i][mask]
            assert any(
                torch.allclose(got, torch.tensor(expected, dtype=got.dtype), atol=1e-6)
                for expected in answers[text]
            ), f"step {step} row {i}: {got.tolist()} vs the service's {answers[text]}"
            assert advantages[i][~mask].abs().sum() == 0
    # the texts sent are TRL's own completions, in TRL's global order
    sent = [[r.text for g in groups for r in g.responses] for groups, _, _ in run.client.calls]
    assert sent == run.completions


@pytest.fixture(scope="module")
def ospo_run(train: Callable[..., Any], live_service: str) -> Any:
    settings = AdapterSettings(url=live_service, seed=40, options=tc.Options(segmenter="word"))
    return train(PROMPTS, settings, reward_funcs=[OspoReward(live_service)])


def test_two_grpo_steps_train_on_the_service_token_advantages(ospo_run, llm_tokenizer):
    assert ospo_run.trainer.state.global_step == 2
    assert_service_advantages_reach_the_loss(ospo_run, llm_tokenizer)
    # the check exercised what it claims: padded rows of different lengths, and
    # advantages that vary along a completion (redistributed, not one Â per row)
    lengths = {int(m.sum()) for inputs in ospo_run.loss_inputs for m in inputs["completion_mask"]}
    assert len(lengths) > 1
    varying = [
        row
        for inputs in ospo_run.loss_inputs
        for row, mask in zip(inputs["advantages"], inputs["completion_mask"], strict=True)
        if len(set(row[mask.bool()].tolist())) > 1
    ]
    assert varying


def test_one_request_per_step_with_the_step_seed_and_the_group_baseline(ospo_run):
    calls = ospo_run.client.calls
    assert [options.seed for _, options, _ in calls] == [40, 41]  # seed + global_step
    assert {options.baseline for _, options, _ in calls} == {"group_norm"}  # scale_rewards
    assert {options.errors for _, options, _ in calls} == {"group"}
    for groups, _, _ in calls:
        # 8 completions = 2 groups of num_generations=4, each group one prompt's label
        assert [len(g.responses) for g in groups] == [4, 4]
        assert sorted(g.target.query_id for g in groups) == ["demo-0000", "demo-0001"]
        assert all(r.reward is not None for g in groups for r in g.responses)


def test_step_metrics_are_logged_through_trl(ospo_run):
    logged = [entry for entry in ospo_run.history if "ospo/groups" in entry]
    assert len(logged) == 2
    for entry in logged:
        assert entry["ospo/groups"] == 2.0 and entry["ospo/fallback_groups"] == 0.0
        assert entry["ospo/service_ms"] > 0.0 and entry["ospo/mean_abs_adv"] > 0.0


def test_reading_the_completions_one_token_off_is_caught(
    train, live_service, llm_tokenizer, monkeypatch
):
    def one_off(completion_ids: Any, lengths: Any) -> list[tuple[int, ...]]:
        # positions 1..n instead of 0..n-1 (one more column so a full row stays n long)
        padded = torch.nn.functional.pad(completion_ids, (0, 1), value=0)
        return [tuple(int(t) for t in padded[i, 1 : n + 1].tolist()) for i, n in enumerate(lengths)]

    monkeypatch.setattr(trl_trainer, "completion_tokens", one_off)
    settings = AdapterSettings(url=live_service, options=tc.Options(segmenter="word"))
    run = train(PROMPTS, settings, reward_funcs=[OspoReward(live_service)], steps=1)
    with pytest.raises(AssertionError, match="was not scored"):
        assert_service_advantages_reach_the_loss(run, llm_tokenizer)


def test_a_failed_group_keeps_trl_advantages_and_unscorable_rows_get_zero(train, live_service):
    def reward(prompts: Any, completions: Any, **kwargs: Any) -> list[float | None]:
        # the first completion of every group is unscorable (TRL: NaN, advantage 0)
        return [None if i % 4 == 0 else len(c) / 10 for i, c in enumerate(completions)]

    prompts = [PROMPTS[0], {**PROMPTS[1], "label": "no-such-query"}]
    settings = AdapterSettings(url=live_service, options=tc.Options(segmenter="word"))
    run = train(prompts, settings, reward_funcs=[reward], steps=1)
    (labels,) = run.labels
    (groups, _, result) = run.client.calls[0]
    assert [len(g.responses) for g in groups] == [3, 3]  # unscorable rows left out
    failed = [g.error for g in result.groups if g.error is not None]
    assert len(failed) == 1 and failed[0].code == "unknown_query"
    (own,) = run.trl_advantages
    (mask,) = run.completion_masks
    (out,) = run.ospo_advantages
    answers = iter(
        a.token_advantages for g in result.groups if g.error is None for a in g.responses
    )
    for i, label in enumerate(labels):
        row = mask[i].bool()
        if i % 4 == 0:
            assert own[i] == 0 and out[i].abs().sum() == 0
        elif label == "no-such-query":
            assert torch.allclose(out[i][row], own[i].expand(int(row.sum())))
        else:
            expected = torch.tensor(next(answers), dtype=out.dtype)
            assert torch.allclose(out[i][row], expected, atol=1e-6)
        assert out[i][~row].abs().sum() == 0
    (entry,) = [e for e in run.history if "ospo/groups" in e]
    assert entry["ospo/fallback_groups"] == 1.0 and entry["ospo/fallback_step"] == 0.0


def test_a_dead_service_falls_back_to_trl_advantages_for_the_step(train, dead_url):
    def reward(prompts: Any, completions: Any, **kwargs: Any) -> list[float]:
        return [len(c) / 10 for c in completions]

    policy = FailurePolicy(retry_budget_s=0.3, timeout_s=0.2)
    run = train(
        PROMPTS, AdapterSettings(url=dead_url, failure=policy), reward_funcs=[reward], steps=1
    )
    (own,), (mask,), (out,) = run.trl_advantages, run.completion_masks, run.ospo_advantages
    assert torch.equal(out, own.unsqueeze(1) * mask)
    (entry,) = [e for e in run.history if "ospo/groups" in e]
    assert entry["ospo/fallback_step"] == 1.0 and entry["ospo/fallback_groups"] == 2.0


def test_under_on_failure_fail_a_dead_service_stops_training(train, dead_url):
    policy = FailurePolicy(on_failure="fail", retry_budget_s=0.3, timeout_s=0.2)
    with pytest.raises(tc.ConnectError):
        train(
            PROMPTS,
            AdapterSettings(url=dead_url, failure=policy),
            reward_funcs=[lambda prompts, completions, **kw: [0.0] * len(completions)],
            steps=1,
        )


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"scale_rewards": "batch"}, "scale_rewards='batch' is refused"),
        (
            {"multi_objective_aggregation": "normalize_then_sum"},
            "multi_objective_aggregation='normalize_then_sum' is refused",
        ),
        ({"importance_sampling_level": "sequence"}, "cancels OSPO's redistribution"),
        ({"label_column": "target"}, "has no 'target' column"),
    ],
)
def test_configurations_it_cannot_honour_are_refused(build, dead_url, config, expected):
    with pytest.raises(AdapterError, match=expected):
        build(PROMPTS, dead_url, reward_funcs=[OspoReward(dead_url)], record=False, **config)


def test_scale_rewards_none_maps_to_dr_grpo(build, dead_url):
    run = build(PROMPTS, dead_url, reward_funcs=[OspoReward(dead_url)], scale_rewards="none")
    assert run.trainer._ospo_baseline == "dr_grpo"


def test_only_trl_1_16_is_accepted():
    assert check_trl_version("1.16.3") == "1.16.3"
    with pytest.raises(AdapterError, match="tested only on 1.16"):
        check_trl_version("1.17.0")


def test_ospo_reward_is_the_service_ndcg_of_the_completion(live_service):
    completions = [
        "<answer>cotton cardigan for women</answer>",
        [{"role": "assistant", "content": "<answer>wool socks</answer>"}],
    ]
    labels = ["demo-0000", {"query_id": "demo-0000"}]
    reward = OspoReward(live_service)
    rewards = reward(["p", "p"], completions, label=labels)
    reward.close()
    with tc.AttributionClient(live_service) as client:
        answer = client.attribute(
            [
                tc.Group(
                    id="g",
                    target=tc.Target(query_id="demo-0000"),
                    responses=[
                        tc.Response(text="<answer>cotton cardigan for women</answer>"),
                        tc.Response(text="<answer>wool socks</answer>"),
                    ],
                )
            ]
        )
    assert rewards == pytest.approx([r.reward for r in answer.groups[0].responses])
    assert rewards[0] > 0


def test_ospo_reward_plays_the_game_of_its_options(live_service):
    completions = ["<think>hmm</think><search>cotton cardigan for women</search>"]
    options = tc.Options(k=3, depth=20, query_tag="search")
    group = tc.Group(
        id="g",
        target=tc.Target(query_id="demo-0000"),
        responses=[tc.Response(text=completions[0])],
    )
    with tc.AttributionClient(live_service) as client:
        rewards = OspoReward(client, options=options)(["p"], completions, label=["demo-0000"])
        default = OspoReward(client)(["p"], completions, label=["demo-0000"])
        answer = client.attribute([group], options)
    assert rewards == pytest.approx([answer.groups[0].responses[0].reward])
    assert default != rewards  # the default tag (<answer>) finds no query here
