"""The PPO-clipped token-level loss and the update step."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.train.grpo import ppo_clip_loss, sample_groups, update
from experiments.train.policy_tiny import TinyPolicy, TinyVocabulary


def test_at_ratio_one_the_loss_is_minus_the_token_mean_advantage() -> None:
    old = [torch.tensor([-1.0, -2.0]), torch.tensor([-0.5])]
    new = [t.clone().requires_grad_(True) for t in old]
    adv = [torch.tensor([1.0, 3.0]), torch.tensor([-1.0])]
    loss, stats = ppo_clip_loss(new, old, adv)
    assert loss.item() == pytest.approx(-(1.0 + 3.0 - 1.0) / 3)
    loss.backward()
    # d/dlogp of -ratio*A/N at ratio 1 is -A/N, token by token.
    assert new[0].grad is not None and new[1].grad is not None
    assert new[0].grad.tolist() == pytest.approx([-1 / 3, -1.0])
    assert new[1].grad.tolist() == pytest.approx([1 / 3])
    assert stats.clip_fraction == 0.0
    assert stats.approx_kl == pytest.approx(0.0, abs=1e-7)


def test_ratio_beyond_the_clip_range_stops_the_gradient_only_where_it_should() -> None:
    old = [torch.zeros(2)]
    # ratio 1.5 on both tokens: a positive advantage is clipped, a negative one is not.
    new = [torch.full((2,), math.log(1.5), requires_grad=True)]
    adv = [torch.tensor([2.0, -2.0])]
    loss, stats = ppo_clip_loss(new, old, adv, clip_eps=0.2)
    assert loss.item() == pytest.approx(-(1.2 * 2.0 + 1.5 * -2.0) / 2)
    loss.backward()
    assert new[0].grad is not None
    assert new[0].grad[0].item() == 0.0
    assert new[0].grad[1].item() == pytest.approx(1.5 * 2.0 / 2)
    assert stats.clip_fraction == pytest.approx(0.5)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.lists(
            st.tuples(st.floats(-3, 3), st.floats(-0.5, 0.5), st.floats(-5, 5)),
            min_size=1,
            max_size=6,
        ),
        min_size=1,
        max_size=5,
    )
)
def test_loss_is_bounded_by_the_clipped_surrogates(
    rows: list[list[tuple[float, float, float]]],
) -> None:
    old = [torch.tensor([r[0] for r in row]) for row in rows]
    new = [torch.tensor([r[0] + r[1] for r in row]) for row in rows]
    adv = [torch.tensor([r[2] for r in row]) for row in rows]
    loss, _ = ppo_clip_loss(new, old, adv)
    ratio = torch.cat(new).sub(torch.cat(old)).exp()
    a = torch.cat(adv)
    # The pessimistic objective never exceeds the unclipped one.
    assert loss.item() >= -(ratio * a).mean().item() - 1e-5


def test_mismatched_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="response 0"):
        ppo_clip_loss([torch.zeros(2)], [torch.zeros(2)], [torch.zeros(3)])
    with pytest.raises(ValueError, match="same length"):
        ppo_clip_loss([torch.zeros(2)], [], [])


def _policy() -> TinyPolicy:
    words = [
        "red",
        "blue",
        "boots",
        "jacket",
        "leather",
        "wool",
        "please",
        "thanks",
        "nice",
        "i",
        "think",
    ]
    return TinyPolicy(TinyVocabulary.from_words(words))


def test_update_raises_the_probability_of_positively_advantaged_tokens() -> None:
    torch.manual_seed(0)
    policy = _policy()
    generator = torch.Generator().manual_seed(3)
    groups = sample_groups(policy, ["red leather boots please"], 6, generator)
    rollouts = groups[0]
    assert len(rollouts) == 6
    advantages = [torch.full((r.length,), 1.0 if i < 3 else -1.0) for i, r in enumerate(rollouts)]
    optimizer = torch.optim.Adam(policy.trainable_parameters(), lr=1e-2)
    update(policy, optimizer, rollouts, advantages, epochs=3)
    with torch.no_grad():
        after = policy.log_probs(rollouts)
    for i, (rollout, new) in enumerate(zip(rollouts, after, strict=True)):
        change = float(new.sum() - rollout.old_log_probs.sum())
        assert change > 0 if i < 3 else change < 0
