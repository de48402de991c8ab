"""The plug-in's settings (flags = environment variables) and what it refuses."""

from __future__ import annotations

import pytest

from trainer_client import openrlhf_plugin as plugin


def test_settings_from_env():
    settings = plugin.PluginSettings.from_env(
        {
            "OSPO_ATTRIBUTE_URL": "http://h:8000",
            "OSPO_REDISTRIBUTION": "rank",
            "OSPO_MAX_WIDTH": "4",
            "OSPO_MAX_COALITIONS": "32",
            "OSPO_SEED": "9",
            "OSPO_CLIP": "none",
            "OSPO_ON_FAILURE": "fallback",
            "OSPO_SEND_REWARD": "false",
            "OSPO_MAX_RETRIES": "0",
        }
    )
    assert (settings.url, settings.redistribution, settings.max_width, settings.max_coalitions) == (
        "http://h:8000",
        "rank",
        4,
        32,
    )
    assert settings.clip is None and settings.on_failure == "fallback" and not settings.send_reward
    assert settings.max_retries == 0
    options = settings.options("dr_grpo")
    assert options.baseline == "dr_grpo" and options.seed == 9 and options.clip is None
    defaults = plugin.PluginSettings.from_env({"OSPO_ATTRIBUTE_URL": "http://h"})
    # The failure policy's defaults: no clipping, retry for 10 minutes (no count limit), then
    # fall back; more than 3 fallback steps in a row stop the run.
    assert defaults.clip is None and defaults.on_failure == "fallback"
    assert defaults.max_retries is None and defaults.retry_budget_s == 600.0
    assert defaults.max_consecutive_fallbacks == 3
    failure = defaults.adapter_settings().failure
    assert (
        failure.retry_policy().max_elapsed_s == 600.0 and failure.retry_policy().max_retries is None
    )
    for bad in (
        {},
        {"OSPO_ATTRIBUTE_URL": "u", "OSPO_ON_FAILURE": "ignore"},
        {"OSPO_ATTRIBUTE_URL": "u", "OSPO_SEED": "x"},
        {"OSPO_ATTRIBUTE_URL": "u", "OSPO_REDISTRIBUTION": "magic"},
    ):
        with pytest.raises(plugin.OspoPluginError):
            plugin.PluginSettings.from_env(bad)


def test_version_check():
    assert plugin.check_openrlhf_version("0.11.2") == "0.11.2"
    assert plugin.check_openrlhf_version("0.11.0") == "0.11.0"
    for other in ("0.10.9", "0.12.0", "1.11.0"):
        with pytest.raises(plugin.OspoPluginError, match=other.replace(".", r"\.")):
            plugin.check_openrlhf_version(other)


@pytest.mark.parametrize(
    "estimator", ["gae", "reinforce", "reinforce_baseline", "flash_reinforce", None]
)
def test_non_group_estimators_are_refused(estimator):
    with pytest.raises(plugin.OspoPluginError, match="group_norm"):
        plugin.check_estimator(estimator)


def test_group_estimators_are_accepted():
    assert [plugin.check_estimator(e) for e in ("group_norm", "dr_grpo", "rloo")] == [
        "group_norm",
        "dr_grpo",
        "rloo",
    ]


def test_new_settings_from_env():
    settings = plugin.PluginSettings.from_env(
        {
            "OSPO_ATTRIBUTE_URL": "http://h",
            "OSPO_CLIP": "2.5",
            "OSPO_REWARD_MODEL": "sentiment",
            "OSPO_RETRY_BUDGET_S": "30",
            "OSPO_MAX_CONSECUTIVE_FALLBACKS": "0",
            "OSPO_ON_FAILURE": "FAIL",
            "OSPO_K": "50",
            "OSPO_ESTIMATOR": "owen-sum",
        }
    )
    adapter = settings.adapter_settings("rloo")
    assert adapter.clip == 2.5 and adapter.reward_model == "sentiment"
    assert adapter.failure.retry_budget_s == 30.0 and adapter.failure.on_failure == "fail"
    assert adapter.failure.max_consecutive_fallbacks == 0
    assert (adapter.options.k, adapter.options.estimator, adapter.options.baseline) == (
        50,
        "owen-sum",
        "rloo",
    )
    for bad in ({"OSPO_CLIP": "0"}, {"OSPO_CLIP": "nan"}, {"OSPO_RETRY_BUDGET_S": "-1"}):
        with pytest.raises(plugin.OspoPluginError):
            plugin.PluginSettings.from_env({"OSPO_ATTRIBUTE_URL": "http://h", **bad})


def test_refusals_read_openrlhf_defaults():
    from trainer_client.openrlhf.settings import refusals

    given = {
        "algo.advantage.estimator": "group_norm",
        "algo.kl.use_loss": True,
        "data.label_key": "l",
    }
    defaults = {"actor.policy_loss_type": "ppo", "algo.kl.init_coef": 0.01}

    def get(name: str) -> object:
        return given.get(name, defaults.get(name))

    assert refusals(get) == []
    given["algo.kl.use_loss"] = False
    (line,) = refusals(get)
    assert line.startswith("KL in the reward is refused")
    given["algo.kl.init_coef"] = 0.0  # no KL at all: nothing dropped
    assert refusals(get) == []


def test_reward_url_conflicts():
    from trainer_client.openrlhf.settings import reward_url_conflicts

    def settings(**values: object) -> plugin.PluginSettings:
        return plugin.PluginSettings(url="http://h", **values)  # type: ignore[arg-type]

    assert reward_url_conflicts(["http://h/reward"], settings()) == []
    assert reward_url_conflicts("agent", settings(retriever="mpnet")) == []
    assert reward_url_conflicts(["/opt/rm.py", "http://h/get_reward"], settings(k=5)) == []
    (line,) = reward_url_conflicts(["http://h/reward?retriever=mpnet"], settings())
    assert "retriever=mpnet but --ospo.retriever is default" in line
    (line,) = reward_url_conflicts(
        "http://h/reward?retriever=mpnet", settings(retriever="mpnet", k=100)
    )
    assert "k=1000 but --ospo.k is 100" in line
    url = "http://h/reward?depth=50&query_tag=search"
    lines = reward_url_conflicts(url, settings(depth=50))
    assert lines == [
        f"--reward.remote_url {url} scores with query_tag=search but --ospo.query_tag is answer; give both the same (add query_tag=answer to the URL)"
    ]
