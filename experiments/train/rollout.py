"""What a policy hands the trainer: sampled responses with their tokens and sampling-time
log-probs (:class:`Rollout`), and the small interface every policy implements (:class:`Policy`).

A policy's "tokens" are whatever it samples: words for the tiny policy, BPE tokens for
SmolLM2. Each token has a half-open character span into the response text (empty for
special tokens such as EOS); those spans are the ``token_offsets`` sent to ``/attribute``,
so the returned token advantages line up one-to-one with ``token_ids``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

Span = tuple[int, int]


@dataclass(frozen=True)
class Rollout:
    """One sampled response to one prompt."""

    prompt: str
    text: str
    token_ids: torch.Tensor
    """(T,) int64: the sampled tokens, EOS included when it was sampled."""
    token_offsets: tuple[Span, ...]
    """One character span into ``text`` per token (empty spans for special tokens)."""
    old_log_probs: torch.Tensor
    """(T,) float32: log-probs of ``token_ids`` under the policy that sampled them."""
    span: Span | None = None
    """The query's characters in ``text`` when the policy knows them (else the service finds them)."""

    @property
    def length(self) -> int:
        return int(self.token_ids.numel())


class Policy(Protocol):
    """A sampler with differentiable log-probs; the trainer needs nothing else."""

    name: str

    def trainable_parameters(self) -> list[torch.nn.Parameter]: ...

    def sample(
        self,
        prompts: Sequence[str],
        group_size: int,
        generator: torch.Generator,
        *,
        greedy: bool = False,
    ) -> list[Rollout]:
        """``group_size`` responses per prompt, prompt-major (prompt 0's group first).
        ``greedy`` decodes the arg-max (then ``group_size`` is normally 1)."""
        ...

    def log_probs(self, rollouts: Sequence[Rollout]) -> list[torch.Tensor]:
        """Per-token log-probs of each rollout's tokens under the current parameters, with
        gradients: the same computation as at sampling time, so the ratio starts at 1."""
        ...
