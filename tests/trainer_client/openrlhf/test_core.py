"""The OpenRLHF plug-in's core without OpenRLHF: tensors + tokenizer + a client in, token
advantages at the action positions out (through `assign_advantages`, the patched method's
path), labels to targets and pools."""

from __future__ import annotations

from typing import Any

import pytest

import trainer_client as tc
from trainer_client import openrlhf_plugin as plugin

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


def test_a_query_id_label_keeps_its_pool(minilm_tokenizer):
    # /reward filters the ranking to a {"query_id", "pool"} label's pool; the coalition
    # values must be computed on the same game, so the pool reaches /attribute too.
    sequences, action_mask, _ = batch(minilm_tokenizer, PROMPTS[:2], RESPONSES[:2], 0)
    label = '{"query_id": "q1", "pool": ["P1", "P7"]}'
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
    assert groups[0].target == tc.Target(query_id="q1")
    assert list(groups[0].pool or ()) == ["P1", "P7"]


def test_json_object_labels_are_accepted(minilm_tokenizer):
    # OpenRLHF passes a dataset's JSON-object label through as a dict.
    sequences, action_mask, _ = batch(minilm_tokenizer, PROMPTS, RESPONSES, 0)
    first = {"query_id": "q1", "pool": ["P1", "P2"]}
    second = {"relevant": {"P9": 2}}
    client = RecordingClient()
    advantages, info = plugin.ospo_token_advantages(
        sequences,
        action_mask,
        PROMPTS,
        [first, first, second, second],
        minilm_tokenizer,
        torch.zeros(4),
        client=client,
    )
    ((groups, _),) = client.calls
    assert [g.target for g in groups] == [
        tc.Target(query_id="q1"),
        tc.Target(relevant={"P9": 2.0}),
    ]
    assert list(groups[0].pool or ()) == ["P1", "P2"] and groups[1].pool is None
    assert info["ospo_fallback"].tolist() == [0.0] * 4


def test_a_malformed_label_falls_back_for_its_group_only(minilm_tokenizer):
    sequences, action_mask, _ = batch(minilm_tokenizer, PROMPTS, RESPONSES, 0)
    scalars = torch.tensor([0.5, -0.5, 1.0, -1.0])
    client = RecordingClient()
    advantages, info = plugin.ospo_token_advantages(
        sequences,
        action_mask,
        PROMPTS,
        ['{"relevant": {"P1": -1}}'] * 2 + ["q2"] * 2,
        minilm_tokenizer,
        scalars,
        client=client,
    )
    ((groups, _),) = client.calls
    assert [g.target for g in groups] == [tc.Target(query_id="q2")]  # only the valid group
    assert info["ospo_fallback"].tolist() == [1.0, 1.0, 0.0, 0.0]
    assert advantages[0][action_mask[0]].tolist() == pytest.approx(
        [0.5] * int(action_mask[0].sum())
    )
