"""Paired statistics over seeds and the pre-stated verdict rule (docs/STUDY.md, top).

Runs with the same seed share the initial policy and the prompt order, so an arm is compared
with its reference seed by seed: d_s = metric(arm, s) − metric(reference, s). The interval is
the 95 % percentile bootstrap of the mean of d over seeds (resampling seeds with
replacement, 10,000 resamples, fixed generator seed so a table is rebuilt bit for bit).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

RESAMPLES = 10_000
LEVEL = 0.95
MARGIN = 0.01
"""Smallest difference in NDCG that counts as a real effect: a claim whose whole interval lies
below +MARGIN (in the claim's direction) does not hold."""


@dataclass(frozen=True)
class Paired:
    n: int
    mean: float
    low: float
    high: float
    better: int
    """Seeds on which the difference has the claim's sign (strictly)."""
    direction: int

    def verdict(self) -> str:
        return verdict(self)


def paired_bootstrap(
    arm: Sequence[float], reference: Sequence[float], direction: int = 1, seed: int = 0
) -> Paired:
    """Mean paired difference arm − reference with its 95 % bootstrap interval."""
    a = np.asarray(arm, dtype=np.float64)
    b = np.asarray(reference, dtype=np.float64)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(
            f"paired samples must have one equal, non-zero length ({a.size}, {b.size})"
        )
    d = a - b
    if d.size == 1:
        low = high = float(d[0])
    else:
        rng = np.random.default_rng(seed)
        means = d[rng.integers(0, d.size, size=(RESAMPLES, d.size))].mean(axis=1)
        tail = (1.0 - LEVEL) / 2.0
        low, high = (float(q) for q in np.quantile(means, [tail, 1.0 - tail]))
    return Paired(
        n=int(d.size),
        mean=float(d.mean()),
        low=low,
        high=high,
        better=int(np.sum(np.sign(d) == direction)),
        direction=direction,
    )


def verdict(p: Paired) -> str:
    """The pre-stated rule, in the claim's direction (direction × difference):

    - **holds**: the interval excludes 0 in the claim's direction;
    - **does not hold**: the interval excludes 0 in the opposite direction, or it lies
      entirely below +MARGIN (any effect in the claim's direction is too small to matter);
    - **inconclusive**: otherwise (including fewer than 3 seeds, where a bootstrap
      interval means nothing).
    """
    if p.n < 3:
        return "inconclusive"
    low, high = sorted((p.direction * p.low, p.direction * p.high))
    if low > 0.0:
        return "holds"
    if high < 0.0 or high < MARGIN:
        return "does not hold"
    return "inconclusive"


__all__ = ["LEVEL", "MARGIN", "RESAMPLES", "Paired", "paired_bootstrap", "verdict"]
