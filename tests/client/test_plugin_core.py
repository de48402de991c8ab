"""The OpenRLHF plug-in's core without OpenRLHF: tensors + tokenizer + a client in, token
advantages at the action positions out; settings, checks and the launcher's flag handling."""

from __future__ import annotations

from typing import Any

import pytest

import trainer_client as tc
from trainer_client import openrlhf_plugin as plugin
from trainer_client import openrlhf_train

torch = pytest.importorskip("torch")


class RecordingClient:
    """Answers /attribute in-process: token advantage = 100 * group + 10 * response + token."""

    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[tuple[list[tc.Group], tc.Options | None]] = []
        self.error = error

    def attribute(self, groups, options=None):
        self.calls.append((list(groups), options))
        if self.error is not None:
            raise self.error
        results = []
        for g, group in enumerate(groups):
            responses = tuple(
                tc.ResponseResult(
                    reward=0.25 * r,
                    advantage=float(r),
                    segments=(tc.Segment(0, 1, "x", 0.1, 1.0),) * (r + 1),
                    token_advantages=tuple(
                        100.0 * g + 10.0 * r + t for t in range(len(resp.token_offsets))
                    ),
                )
                for r, resp in enumerate(group.responses)
            )
            results.append(tc.GroupResult(id=group.id, responses=responses))
        return tc.AttributeResult(
            groups=tuple(results), stats=tc.Stats(), model=tc.ModelInfo("r", "e", "v")
        )


def batch(tokenizer: Any, prompts: list[str], responses: list[str], pad_id: int) -> Any:
    """Right-padded (sequences, action_mask) in OpenRLHF's layout: mask[t] is token t+1."""
    rows = []
    for prompt, response in zip(prompts, responses, strict=True):
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        r = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.sep_token_id]
        rows.append((p, r))
    width = max(len(p) + len(r) for p, r in rows)
    sequences = torch.full((len(rows), width), pad_id, dtype=torch.long)
    action_mask = torch.zeros((len(rows), width - 1), dtype=torch.bool)
    for i, (p, r) in enumerate(rows):
        sequences[i, : len(p) + len(r)] = torch.tensor(p + r)
        action_mask[i, len(p) - 1 : len(p) + len(r) - 1] = True
    return sequences, action_mask, rows


PROMPTS = ["find boots", "find boots", "cheap kettle please", "cheap kettle please"]
RESPONSES = [
    "<answer>red boots</answer>",
    "<answer>waterproof leather hiking boots size 8</answer>",
    "<answer>kettle</answer>",
    "<answer>copper kettle under 20 dollars</answer>",
]


def test_token_advantages_land_exactly_on_action_positions(minilm_tokenizer):
    sequences, action_mask, rows = batch(
        minilm_tokenizer, PROMPTS, RESPONSES, minilm_tokenizer.pad_token_id
    )
    client = RecordingClient()
    advantages, info = plugin.ospo_token_advantages(
        sequences,
        action_mask,
        PROMPTS,
        ["q1", "q1", "q2", "q2"],
        minilm_tokenizer,
        torch.zeros(4),
        client=client,
    )
    assert advantages.shape == action_mask.shape
    ((groups, _),) = client.calls
    assert [len(g.responses) for g in groups] == [2, 2]  # grouped by prompt
    assert [g.target for g in groups] == [tc.Target(query_id="q1"), tc.Target(query_id="q2")]
    for i, (_prompt_ids, r) in enumerate(rows):
        g, j = divmod(i, 2)
        expected = [100.0 * g + 10.0 * j + t for t in range(len(r))]
        assert advantages[i][action_mask[i]].tolist() == expected
        assert advantages[i][~action_mask[i]].abs().sum() == 0  # prompt and padding stay 0
        # the response ids sent are sequences[i, 1:][mask]: the shifted positions
        sent = groups[g].responses[j]
        assert len(sent.token_offsets or ()) == len(r)
        assert "answer" in sent.text
    assert info["ospo_segments"].tolist() == [1.0, 2.0, 1.0, 2.0]
    assert info["ospo_fallback"].tolist() == [0.0] * 4
    assert all(v.shape == (4,) for v in info.values())


def test_explicit_groups_and_rewards_are_sent(minilm_tokenizer):
    sequences, action_mask, _ = batch(minilm_tokenizer, PROMPTS, RESPONSES, 0)
    client = RecordingClient()
    plugin.ospo_token_advantages(
        sequences,
        action_mask,
        PROMPTS,
        ['{"P1": 2}'] * 2 + ["q2"] * 2,
        minilm_tokenizer,
        torch.zeros(4),
        client=client,
        groups=[0, 0, 1, 1],
        rewards=[0.1, 0.2, 0.3, 0.4],
    )
    ((groups, _),) = client.calls
    assert groups[0].target == tc.Target(relevant={"P1": 2.0})
    assert groups[0].pool is None
    assert [r.reward for g in groups for r in g.responses] == [0.1, 0.2, 0.3, 0.4]


def test_fallback_keeps_scalar_advantages(minilm_tokenizer):
    sequences, action_mask, _ = batch(minilm_tokenizer, PROMPTS, RESPONSES, 0)
    scalars = torch.tensor([0.7, -0.7, 1.0, -1.0])
    client = RecordingClient(error=tc.ConnectError("down"))
    advantages, info = plugin.ospo_token_advantages(
        sequences,
        action_mask,
        PROMPTS,
        ["q"] * 4,
        minilm_tokenizer,
        scalars,
        client=client,
        on_failure="fallback",
    )
    for i in range(4):
        assert torch.allclose(
            advantages[i][action_mask[i]], scalars[i].expand(int(action_mask[i].sum()))
        )
        assert advantages[i][~action_mask[i]].abs().sum() == 0
    assert info["ospo_fallback"].tolist() == [1.0] * 4


def test_fail_mode_raises(minilm_tokenizer):
    sequences, action_mask, _ = batch(minilm_tokenizer, PROMPTS, RESPONSES, 0)
    with pytest.raises(tc.ServiceUnavailable):
        plugin.ospo_token_advantages(
            sequences,
            action_mask,
            PROMPTS,
            ["q"] * 4,
            minilm_tokenizer,
            torch.zeros(4),
            client=RecordingClient(error=tc.ServiceUnavailable(503, "overloaded", "busy")),
        )


def test_inconsistent_groups_are_refused(minilm_tokenizer):
    sequences, action_mask, _ = batch(minilm_tokenizer, PROMPTS, RESPONSES, 0)
    with pytest.raises(plugin.OspoPluginError, match="disagree"):
        plugin.ospo_token_advantages(
            sequences,
            action_mask,
            PROMPTS,
            ["q"] * 4,
            minilm_tokenizer,
            torch.zeros(4),
            client=RecordingClient(),
            groups=[0, 0, 0, 0],
        )


def test_scatter_checks_lengths():
    mask = torch.tensor([[0, 1, 1, 0]], dtype=torch.bool)
    out = plugin.scatter_token_values(mask, [[1.5, 2.5]], torch.ones(1, 4))
    assert out.tolist() == [[0.0, 1.5, 2.5, 0.0]]
    with pytest.raises(plugin.OspoPluginError):
        plugin.scatter_token_values(mask, [[1.0]], torch.ones(1, 4))


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
    assert defaults.clip is tc.UNSET and defaults.on_failure == "fail" and defaults.max_retries == 5
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
    ]


@pytest.mark.parametrize(
    "argv",
    [
        ["--algo.advantage.estimator", "gae", "--ospo.url", "http://svc"],
        ["--ospo.url", "http://svc"],  # OpenRLHF's default estimator is gae
        ["--algo.advantage.estimator", "group_norm"],  # no URL
    ],
)
def test_launcher_refuses_before_starting_ray(monkeypatch, capsys, argv):
    monkeypatch.delenv("OSPO_ATTRIBUTE_URL", raising=False)
    started: list[Any] = []
    status = openrlhf_train.main(argv, ray_init=started.append, run=started.append)
    assert status == 2 and started == []
    assert "trainer_client.openrlhf_train:" in capsys.readouterr().err


def test_graded_label_with_a_pool(minilm_tokenizer):
    sequences, action_mask, _ = batch(minilm_tokenizer, PROMPTS[:2], RESPONSES[:2], 0)
    label = '{"relevant": {"P1": 1}, "pool": ["P1", "P7", "P8"]}'
    client = RecordingClient()
    plugin.ospo_token_advantages(
        sequences,
        action_mask,
        PROMPTS[:2],
        [label, label],
        minilm_tokenizer,
        torch.zeros(2),
        client=client,
    )
    ((groups, _),) = client.calls
    assert groups[0].target == tc.Target(relevant={"P1": 1.0})
    assert list(groups[0].pool or ()) == ["P1", "P7", "P8"]
