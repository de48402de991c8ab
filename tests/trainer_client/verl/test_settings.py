"""The `algorithm.ospo` section and the row helpers, without verl."""

from __future__ import annotations

import pytest

from trainer_client.adapter import AdapterError
from trainer_client.verl import settings_from_config
from trainer_client.verl.rollouts import label_of, response_tokens, session_keys
from trainer_client.verl.settings import baseline, refusals

torch = pytest.importorskip("torch")


def test_keys_go_to_the_options_the_failure_policy_and_the_adapter(monkeypatch):
    monkeypatch.setenv("OSPO_API_KEY", "secret")
    found = settings_from_config(
        {
            "url": "http://ospo:8000",
            "retriever": "minilm",
            "k": 100,
            "max_width": 8,
            "redistribution": "rank",
            "seed": 5,
            "clip": 3.0,
            "on_failure": "fail",
            "retry_budget_s": 60,
            "max_consecutive_fallbacks": 1,
            "label_field": "extra_info.label",
        }
    )
    adapter = found.adapter
    assert adapter.url == "http://ospo:8000" and adapter.api_key == "secret"
    assert (adapter.options.retriever, adapter.options.k, adapter.options.max_width) == (
        "minilm",
        100,
        8,
    )
    assert adapter.options.redistribution == "rank" and adapter.seed == 5 and adapter.clip == 3.0
    assert adapter.failure.on_failure == "fail" and adapter.failure.retry_budget_s == 60
    assert adapter.failure.max_consecutive_fallbacks == 1
    assert found.label_field == ("extra_info", "label")
    assert settings_from_config({"url": "u"}).label_field == ("reward_model", "ground_truth")


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        (None, "algorithm.ospo.url is required"),
        ({"url": "u", "errors": "request"}, "unknown key"),
        ({"url": "u", "on_failure": "ignore"}, "on_failure must be"),
        ({"url": "u", "clip": -1}, "clip must be > 0"),
    ],
)
def test_bad_sections_are_refused_with_the_key(section, expected):
    with pytest.raises(AdapterError, match=expected):
        settings_from_config(section)


def test_baseline_follows_norm_adv_by_std_in_grpo():
    assert baseline({"norm_adv_by_std_in_grpo": True}) == "group_norm"
    assert baseline({}) == "group_norm"
    assert baseline({"norm_adv_by_std_in_grpo": False}) == "dr_grpo"


def test_a_good_config_has_no_refusals():
    config = {
        "algorithm.adv_estimator": "ospo",
        "algorithm.use_kl_in_reward": False,
        "actor_rollout_ref.actor.policy_loss.loss_mode": "vanilla",
        "algorithm.ospo": {"url": "http://ospo:8000"},
    }
    assert refusals(config.get) == []


def test_rows_are_read_at_their_response_mask():
    ids = [torch.tensor([5, 6, 7, 8]), torch.tensor([9, 10])]
    masks = [torch.tensor([1, 1, 0, 1]), torch.tensor([1, 1])]
    assert response_tokens(ids, masks) == [(5, 6, 8), (9, 10)]
    assert session_keys(["a-b_0_0", "a_b_3_1"]) == [("a-b", "0", 0), ("a_b", "3", 1)]
    with pytest.raises(AdapterError, match="unexpected TransferQueue key"):
        session_keys(["nokey"])
    assert (
        label_of({"reward_model": {"ground_truth": "q1"}}, ("reward_model", "ground_truth")) == "q1"
    )
    with pytest.raises(AdapterError, match="label_field"):
        label_of({"reward_model": {}}, ("reward_model", "ground_truth"))
