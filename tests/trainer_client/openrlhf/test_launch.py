"""The launcher: flags, refusals before Ray starts, the runtime_env it starts Ray with."""

from __future__ import annotations

import os
from typing import Any

import pytest

from trainer_client import openrlhf_plugin as plugin
from trainer_client import openrlhf_train

OK_FLAGS = ["--data.label_key", "label", "--algo.kl.use_loss"]


@pytest.fixture(autouse=True)
def restore_ospo_environment() -> Any:
    """main() exports the OSPO_* settings to this process: put the environment back."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("OSPO_")}
    yield
    for key in [k for k in os.environ if k.startswith("OSPO_")]:
        del os.environ[key]
    os.environ.update(saved)


def test_launcher_strips_ospo_flags():
    argv = [
        "--actor.model_name_or_path",
        "m",
        "--ospo.url",
        "http://svc:8000",
        "--algo.advantage.estimator",
        "group_norm",
        "--ospo.on_failure=fallback",
        "--ospo.max-width",
        "4",
    ]
    rest, env = openrlhf_train.split_ospo_flags(argv)
    assert rest == ["--actor.model_name_or_path", "m", "--algo.advantage.estimator", "group_norm"]
    assert env == {
        "OSPO_ATTRIBUTE_URL": "http://svc:8000",
        "OSPO_ON_FAILURE": "fallback",
        "OSPO_MAX_WIDTH": "4",
    }
    with pytest.raises(plugin.OspoPluginError, match="unknown flag"):
        openrlhf_train.split_ospo_flags(["--ospo.nope", "1"])
    with pytest.raises(plugin.OspoPluginError, match="needs a value"):
        openrlhf_train.split_ospo_flags(["--ospo.url"])


def test_launcher_inits_ray_with_the_hook_then_runs_openrlhf(monkeypatch):
    for key in list(__import__("os").environ):
        if key.startswith("OSPO_"):
            monkeypatch.delenv(key)
    # main() exports the OSPO_* variables to this process too; let monkeypatch undo that.
    monkeypatch.setenv("OSPO_ATTRIBUTE_URL", "placeholder")
    calls: list[tuple[str, Any]] = []
    argv = [
        "--algo.advantage.estimator",
        "group_norm",
        "--ospo.url",
        "http://svc:8000",
        "--rollout.n_samples_per_prompt",
        "8",
        "--data.label_key",
        "label",
        "--algo.kl.use_loss",
    ]
    status = openrlhf_train.main(
        argv,
        ray_init=lambda env: calls.append(("ray", env)),
        run=lambda a: calls.append(("run", a)),
    )
    assert status == 0
    (_, env), (_, run_argv) = calls
    assert env["worker_process_setup_hook"] == "trainer_client.openrlhf_plugin.install"
    assert env["env_vars"]["OSPO_ATTRIBUTE_URL"] == "http://svc:8000"
    assert {"TOKENIZERS_PARALLELISM", "NCCL_DEBUG", "RAY_ENABLE_ZERO_COPY_TORCH_TENSORS"} <= set(
        env["env_vars"]
    )
    assert run_argv == [
        "--algo.advantage.estimator",
        "group_norm",
        "--rollout.n_samples_per_prompt",
        "8",
        "--data.label_key",
        "label",
        "--algo.kl.use_loss",
    ]


@pytest.mark.parametrize(
    "argv",
    [
        ["--algo.advantage.estimator", "gae", "--ospo.url", "http://svc", *OK_FLAGS],
        ["--ospo.url", "http://svc", *OK_FLAGS],  # OpenRLHF's default estimator is gae
        ["--algo.advantage.estimator", "group_norm", *OK_FLAGS],  # no URL
    ],
)
def test_launcher_refuses_before_starting_ray(monkeypatch, capsys, argv):
    monkeypatch.delenv("OSPO_ATTRIBUTE_URL", raising=False)
    started: list[Any] = []
    status = openrlhf_train.main(argv, ray_init=started.append, run=started.append)
    assert status == 2 and started == []
    assert "trainer_client.openrlhf_train:" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--actor.policy_loss_type", "gspo"], "policy_loss_type gspo"),
        (["--algo.kl.init_coef", "0.01"], "KL in the reward"),
        (["--train.agent_func_path", "/x/agent.py"], "agent mode"),
        (["--reward.remote_url", "http://h:8000/reward?retriever=mpnet"], "retriever=mpnet"),
    ],
)
def test_launcher_refuses_each_problem_with_one_line(monkeypatch, capsys, extra, needle):
    monkeypatch.delenv("OSPO_RETRIEVER", raising=False)
    started: list[Any] = []
    argv = [
        "--algo.advantage.estimator",
        "group_norm",
        "--ospo.url",
        "http://svc",
        "--ospo.retriever",
        "default",
    ]
    if extra[0] != "--algo.kl.init_coef":
        argv += ["--algo.kl.use_loss"]
    argv += ["--data.label_key", "label", *extra]
    status = openrlhf_train.main(argv, ray_init=started.append, run=started.append)
    err = capsys.readouterr().err
    assert status == 2 and started == []
    problems = [line for line in err.splitlines() if line.startswith("  ")]
    assert len(problems) == 1 and needle in problems[0]


def test_launcher_refuses_a_missing_label_key_and_kl_in_reward_together(capsys):
    status = openrlhf_train.main(
        ["--algo.advantage.estimator", "rloo", "--ospo.url", "http://svc"],
        ray_init=lambda env: None,
        run=lambda argv: None,
    )
    err = capsys.readouterr().err
    assert status == 2 and "--data.label_key is required" in err and "KL in the reward" in err
    # a reward model target needs no label key; KL with init_coef 0 is no KL at all
    status = openrlhf_train.main(
        [
            "--algo.advantage.estimator",
            "rloo",
            "--algo.kl.init_coef",
            "0",
            "--ospo.url",
            "http://svc",
            "--ospo.reward_model",
            "sentiment",
        ],
        ray_init=lambda env: None,
        run=lambda argv: None,
    )
    assert status == 0


def test_the_reward_url_gets_the_plugin_retriever_and_k(monkeypatch):
    for key in list(__import__("os").environ):
        if key.startswith("OSPO_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("OSPO_ATTRIBUTE_URL", "placeholder")
    monkeypatch.setenv("OSPO_RETRIEVER", "placeholder")
    monkeypatch.setenv("OSPO_K", "1")
    envs: list[Any] = []
    runs: list[list[str]] = []
    argv = [
        *OK_FLAGS,
        "--algo.advantage.estimator",
        "group_norm",
        "--reward.remote_url",
        "http://h:8000/reward,/opt/other_rm.py",
        "--ospo.url",
        "http://h:8000",
        "--ospo.retriever",
        "mpnet",
        "--ospo.k",
        "100",
        "--ospo.query_tag",
        "search",
    ]
    assert openrlhf_train.main(argv, ray_init=envs.append, run=runs.append) == 0
    (run_argv,) = runs
    url = run_argv[run_argv.index("--reward.remote_url") + 1]
    assert url == "http://h:8000/reward?retriever=mpnet&k=100&query_tag=search,/opt/other_rm.py"
    # and the other way round: a URL that names its retriever sets the plug-in's
    for key in ("OSPO_RETRIEVER", "OSPO_K", "OSPO_QUERY_TAG"):
        monkeypatch.delenv(key, raising=False)
    argv = [*OK_FLAGS, "--algo.advantage.estimator", "group_norm", "--ospo.url", "http://h:8000"]
    argv += ["--reward.remote_url=http://h:8000/reward?retriever=esci&k=50"]
    assert openrlhf_train.main(argv, ray_init=envs.append, run=runs.append) == 0
    env_vars = envs[-1]["env_vars"]
    assert (env_vars["OSPO_RETRIEVER"], env_vars["OSPO_K"]) == ("esci", "50")
    assert runs[-1][-1] == "--reward.remote_url=http://h:8000/reward?retriever=esci&k=50"


def test_runtime_env_ships_the_package_unless_told_not_to():
    from pathlib import Path

    import trainer_client

    env = openrlhf_train.runtime_env({"OSPO_ATTRIBUTE_URL": "u"}, {})
    assert env["py_modules"] == [str(Path(trainer_client.__file__).resolve().parent)]
    assert "py_modules" not in openrlhf_train.runtime_env({}, {}, ship_package=False)
    assert (
        plugin.PluginSettings.from_env(
            {"OSPO_ATTRIBUTE_URL": "u", "OSPO_SHIP_PACKAGE": "false"}
        ).ship_package
        is False
    )
