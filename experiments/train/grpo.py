"""GRPO/OSPO policy update: the PPO-clipped token-level loss and the inner update epochs.

The advantages come from the service (``/attribute``): under GRPO every token of a response
carries the response's group advantage, under OSPO the query's tokens carry a share of it
weighted by their segments' Owen credit. The loss is the same for both, which is the point:

    L = - 1/N Σ_tokens min(ρ_t A_t, clip(ρ_t, 1-ε, 1+ε) A_t),   ρ_t = exp(log π(t) - log π_old(t))

averaged over every token of the batch (token-level, as DAPO and OpenRLHF's default), with
π_old the sampling-time log-probs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from experiments.train.rollout import Policy, Rollout


@dataclass(frozen=True)
class LossStats:
    loss: float
    clip_fraction: float
    """Share of tokens whose ratio was clipped (the clipped term was the smaller one)."""
    approx_kl: float
    """Mean of (ratio - 1) - log ratio over tokens: a non-negative estimate of KL(old || new)."""


def ppo_clip_loss(
    new_log_probs: Sequence[torch.Tensor],
    old_log_probs: Sequence[torch.Tensor],
    advantages: Sequence[torch.Tensor],
    clip_eps: float = 0.2,
) -> tuple[torch.Tensor, LossStats]:
    """Token-level PPO-clipped surrogate over a batch of responses of different lengths."""
    if not len(new_log_probs) == len(old_log_probs) == len(advantages):
        raise ValueError("new_log_probs, old_log_probs and advantages must have the same length")
    for index, (new, old, adv) in enumerate(
        zip(new_log_probs, old_log_probs, advantages, strict=True)
    ):
        if not new.shape == old.shape == adv.shape:
            raise ValueError(
                f"response {index}: shapes differ (new {tuple(new.shape)}, old {tuple(old.shape)}, "
                f"advantages {tuple(adv.shape)})"
            )
    new = torch.cat(list(new_log_probs))
    if new.numel() == 0:
        raise ValueError("ppo_clip_loss needs at least one token")
    old = torch.cat(list(old_log_probs)).detach()
    adv = torch.cat(list(advantages)).detach().to(new.dtype)
    log_ratio = new - old
    ratio = log_ratio.exp()
    unclipped = ratio * adv
    clipped = ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps) * adv
    loss = -torch.minimum(unclipped, clipped).mean()
    with torch.no_grad():
        clip_fraction = float((clipped < unclipped).float().mean())
        approx_kl = float(((ratio - 1.0) - log_ratio).mean())
    return loss, LossStats(
        loss=float(loss.detach()), clip_fraction=clip_fraction, approx_kl=approx_kl
    )


def sample_groups(
    policy: Policy, prompts: Sequence[str], group_size: int, generator: torch.Generator
) -> list[list[Rollout]]:
    """``group_size`` sampled responses per prompt, one list per prompt (a GRPO group)."""
    if group_size < 1:
        raise ValueError("group_size must be >= 1")
    flat = policy.sample(prompts, group_size, generator)
    return [flat[i * group_size : (i + 1) * group_size] for i in range(len(prompts))]


def update(
    policy: Policy,
    optimizer: torch.optim.Optimizer,
    rollouts: Sequence[Rollout],
    advantages: Sequence[torch.Tensor],
    *,
    epochs: int = 2,
    clip_eps: float = 0.2,
    max_grad_norm: float | None = 1.0,
) -> LossStats:
    """``epochs`` full-batch gradient steps on the clipped loss; the stats of the last one."""
    if epochs < 1:
        raise ValueError("epochs must be >= 1")
    old = [r.old_log_probs for r in rollouts]
    stats: LossStats | None = None
    for _ in range(epochs):
        optimizer.zero_grad(set_to_none=True)
        loss, stats = ppo_clip_loss(policy.log_probs(rollouts), old, advantages, clip_eps)
        loss.backward()  # type: ignore[no-untyped-call]
        if max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(policy.trainable_parameters(), max_grad_norm)
        optimizer.step()
    assert stats is not None
    return stats


__all__ = ["LossStats", "ppo_clip_loss", "sample_groups", "update"]
