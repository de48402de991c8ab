"""The launcher: flags, refusals before Ray starts, the runtime_env it starts Ray with."""

from __future__ import annotations

from typing import Any

import pytest

from trainer_client import openrlhf_plugin as plugin
from trainer_client import openrlhf_train

OK_FLAGS = ["--data.label_key", "label", "--algo.kl.use_loss"]


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
