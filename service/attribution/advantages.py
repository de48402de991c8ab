"""Group baselines and the redistribution of a response's advantage over its tokens.

Pipeline per response: segment values φ -> segment credit φ̃ (shares summing to 1, see
`segment_credit`) -> token credit Wᵀφ̃ through the character-overlap matrix W -> token
advantages whose mean over the response stays Â (before clipping).

RANK uses ascending average ranks starting at 1: the highest-credit token gets the largest
share, ties share their average rank, and all-equal credits give uniform shares. (The
authors' code sorts descending, which contradicts its own comment.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from .errors import AttributionError, UnknownOptionError
from .segment import Span

BASELINES = ("group_norm", "dr_grpo", "rloo")
REDISTRIBUTIONS = ("prop", "rank", "uniform")
OUTSIDE_MODES = ("advantage", "zero")
CREDIT_RULES = ("positive", "minmax")
NEGATIVE_MODES = ("same", "inverse")


def group_advantages(
    rewards: ArrayLike, baseline: str = "group_norm", eps: float = 1e-6
) -> np.ndarray:
    """Sequence advantages Â for one group. group_norm: (r - mean)/(std(ddof=1) + eps);
    dr_grpo: r - mean; rloo: r - mean of the other responses. A group of one gets 0."""
    r = np.asarray(rewards, dtype=np.float64).reshape(-1)
    if baseline not in BASELINES:
        raise UnknownOptionError("baseline", baseline, BASELINES)
    if r.size == 0:
        return np.zeros(0)
    if baseline == "dr_grpo":
        result: np.ndarray = r - r.mean()
        return result
    if r.size == 1:
        return np.zeros(1)
    if baseline == "rloo":
        result = r - (r.sum() - r) / (r.size - 1)
    else:
        result = (r - r.mean()) / (r.std(ddof=1) + eps)
    return result


def _spans_array(spans: Sequence[Span] | ArrayLike, name: str) -> np.ndarray:
    array = np.asarray(spans, dtype=np.int64)
    if array.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    if array.ndim != 2 or array.shape[1] != 2 or (array[:, 1] < array[:, 0]).any():
        raise AttributionError(f"{name} must be [start, end) pairs with start <= end")
    return array


def token_segment_weights(
    segment_spans: Sequence[Span] | ArrayLike, token_offsets: Sequence[Span] | ArrayLike
) -> np.ndarray:
    """W (P, T): characters shared by segment p and token t over the characters of t, each
    column then normalised to sum to 1 (0 for tokens no segment touches, e.g. empty spans)."""
    segments = _spans_array(segment_spans, "segment_spans")
    tokens = _spans_array(token_offsets, "token_offsets")
    overlap = np.minimum(segments[:, None, 1], tokens[None, :, 1]) - np.maximum(
        segments[:, None, 0], tokens[None, :, 0]
    )
    weights = np.clip(overlap, 0, None).astype(np.float64)
    lengths = (tokens[:, 1] - tokens[:, 0]).astype(np.float64)
    weights = np.divide(weights, lengths, out=np.zeros_like(weights), where=lengths > 0)
    totals = weights.sum(axis=0)
    result: np.ndarray = np.divide(weights, totals, out=np.zeros_like(weights), where=totals > 0)
    return result


def _shares(values: np.ndarray, rule: str) -> np.ndarray:
    """Shares summing to 1 from finite values (at least one) by `rule`."""
    if rule == "positive":
        positive = np.clip(values, 0.0, None)
        top = float(positive.max())
        if top <= 0.0:
            return np.full(values.size, 1.0 / values.size)
        positive /= top  # scale first, so huge values cannot overflow the sum
        result: np.ndarray = positive / positive.sum()
        return result
    low, high = values.min(), values.max()
    if high <= low:
        return np.full(values.size, 1.0 / values.size)
    if not np.isfinite(high - low):  # a range beyond the floats: min-max is scale-free
        values = values / np.abs(values).max()
        low, high = values.min(), values.max()
    scaled = (values - low) / (high - low)
    result = scaled / scaled.sum()
    return result


def segment_credit(
    phi: ArrayLike, *, rule: str = "positive", advantage: float = 0.0, negative: str = "same"
) -> np.ndarray:
    """φ̃: each segment's share of the response's advantage, non-negative, summing to 1.

    rule="positive": shares ∝ max(φ_i, 0), uniform when no value is positive (a zero-reward
    response still carries its Â). A segment with a positive value never gets 0, the order
    follows the values, and the shares do not change when the values are scaled.
    rule="minmax": the authors' normalisation applied per segment (min-max to [0,1], then
    proportions; uniform when all are equal). With segments that partition the query it
    always gives the lowest segment 0 (two segments: winner takes all); kept to reproduce.

    NaN marks an unmeasured segment (no evaluated pair): it gets the mean share of the
    measured ones and everything is renormalised, so with m measured and u unmeasured a
    measured share s_i becomes s_i·m/(m+u) and an unmeasured one 1/(m+u); all unmeasured ->
    uniform. An infinite value also gives uniform shares (the values carry no usable
    ranking), as the uniform fallback does for a degenerate rollout elsewhere.

    negative="inverse" with advantage < 0: the shares come from -φ by the same rule, so the
    lowest-valued (filler, harmful) segments take the largest blame; "same" (the paper)
    spreads blame like credit."""
    if rule not in CREDIT_RULES:
        raise UnknownOptionError("credit", rule, CREDIT_RULES)
    if negative not in NEGATIVE_MODES:
        raise UnknownOptionError("negative", negative, NEGATIVE_MODES)
    values = np.asarray(phi, dtype=np.float64).reshape(-1)
    if values.size == 0:
        return np.zeros(0)
    measured = ~np.isnan(values)
    if np.isinf(values).any() or not measured.any():
        return np.full(values.size, 1.0 / values.size)
    if negative == "inverse" and advantage < 0:
        values = -values
    count = int(measured.sum())
    result = np.full(values.size, 1.0 / values.size)
    result[measured] = _shares(values[measured], rule) * (count / values.size)
    return result


def token_credit(W: ArrayLike, credit: ArrayLike) -> np.ndarray:
    """Token credit Wᵀφ̃ (length T)."""
    result: np.ndarray = np.asarray(W, dtype=np.float64).T @ np.asarray(credit, dtype=np.float64)
    return result


def _mask_array(mask: ArrayLike | None, size: int) -> np.ndarray:
    if mask is None:
        return np.ones(size, dtype=bool)
    array = np.asarray(mask, dtype=bool).reshape(-1)
    if array.size != size:
        raise AttributionError(f"mask has {array.size} entries for {size} tokens")
    return array


def _spread(shares: np.ndarray, advantage: float, mask: np.ndarray) -> np.ndarray:
    """T_q·p_t·Â on the masked tokens (p: non-negative shares), 0 elsewhere; uniform shares
    when they sum to 0, so a zero-reward response still carries its (negative) Â."""
    result = np.zeros(mask.size)
    count = int(mask.sum())
    if count == 0:
        return result
    total = float(shares.sum())
    if not np.isfinite(total) or total <= 0.0:
        result[mask] = advantage
    else:
        result[mask] = count * (shares / total) * advantage
    return result


def redistribute_prop(
    credit_t: ArrayLike, advantage: float, mask: ArrayLike | None = None
) -> np.ndarray:
    """PROP: masked token t gets T_q·p_t·Â with p_t = credit_t / Σ_mask credit (negative
    credits count as 0); uniform shares when the credits sum to 0; unmasked tokens get 0."""
    credits = np.asarray(credit_t, dtype=np.float64).reshape(-1)
    selected = _mask_array(mask, credits.size)
    return _spread(np.clip(credits[selected], 0.0, None), float(advantage), selected)


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ascending ranks from 1 (largest value -> largest rank); ties get their average rank."""
    unique, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    first_rank = np.cumsum(counts) - counts + 1
    result: np.ndarray = (first_rank + (counts - 1) / 2.0)[inverse.reshape(-1)].astype(np.float64)
    return result


def redistribute_rank(
    credit_t: ArrayLike, advantage: float, mask: ArrayLike | None = None
) -> np.ndarray:
    """RANK: masked token t gets T_q·q_t·Â with q_t = rank_t / Σ ranks, ascending average
    ranks over the masked tokens (all-equal credits -> uniform); unmasked tokens get 0."""
    credits = np.asarray(credit_t, dtype=np.float64).reshape(-1)
    selected = _mask_array(mask, credits.size)
    if not selected.any():
        return np.zeros(credits.size)
    return _spread(average_ranks(credits[selected]), float(advantage), selected)


def redistribute_uniform(n_tokens: int, advantage: float) -> np.ndarray:
    """Plain GRPO: every token gets Â."""
    return np.full(int(n_tokens), float(advantage))


def clip_bound(clip: float, advantages_of_batch: ArrayLike) -> float:
    """clip·std(Â), the std (ddof=0) over every response advantage of the batch (0 for none)."""
    if clip <= 0:
        raise AttributionError(f"clip must be > 0 or None, got {clip}")
    batch = np.asarray(advantages_of_batch, dtype=np.float64).reshape(-1)
    return clip * float(batch.std()) if batch.size else 0.0


def clip_advantages(a: ArrayLike, clip: float | None, advantages_of_batch: ArrayLike) -> np.ndarray:
    """Clamp token advantages to ±clip_bound(clip, batch); clip None leaves them as they are."""
    values = np.asarray(a, dtype=np.float64)
    if clip is None:
        return values.copy()
    bound = clip_bound(clip, advantages_of_batch)
    result: np.ndarray = np.clip(values, -bound, bound)
    return result


def query_token_mask(token_offsets: Sequence[Span] | ArrayLike, query_span: Span) -> np.ndarray:
    """Tokens sharing at least one character with the query span (empty tokens never do)."""
    tokens = _spans_array(token_offsets, "token_offsets")
    start, end = query_span
    result: np.ndarray = np.minimum(tokens[:, 1], end) > np.maximum(tokens[:, 0], start)
    return result


def token_advantages(
    *,
    segment_spans: Sequence[Span] | ArrayLike,
    phi: ArrayLike,
    token_offsets: Sequence[Span] | ArrayLike,
    query_span: Span,
    advantage: float,
    redistribution: str,
    outside: str = "advantage",
    credit: str = "positive",
    negative: str = "same",
) -> np.ndarray:
    """Per-token advantages for one response (before clipping).

    Tokens overlapping the query span get T_q·p_t·Â (prop/rank over the token credit Wᵀφ̃,
    φ̃ = segment_credit(φ, rule=credit, advantage=Â, negative=negative); NaN in φ marks an
    unmeasured segment); tokens outside keep Â (outside="advantage") or get 0 while the
    query tokens carry T·Â (outside="zero"); either way the mean over all tokens is Â. With
    no query token, every token gets Â. `uniform` gives Â everywhere."""
    if redistribution not in REDISTRIBUTIONS:
        raise UnknownOptionError("redistribution", redistribution, REDISTRIBUTIONS)
    if outside not in OUTSIDE_MODES:
        raise UnknownOptionError("outside", outside, OUTSIDE_MODES)
    if credit not in CREDIT_RULES:
        raise UnknownOptionError("credit", credit, CREDIT_RULES)
    if negative not in NEGATIVE_MODES:
        raise UnknownOptionError("negative", negative, NEGATIVE_MODES)
    tokens = _spans_array(token_offsets, "token_offsets")
    n_tokens = len(tokens)
    advantage = float(advantage)
    if redistribution == "uniform":
        return redistribute_uniform(n_tokens, advantage)
    values = np.asarray(phi, dtype=np.float64).reshape(-1)
    spans = _spans_array(segment_spans, "segment_spans")
    if values.size != len(spans):
        raise AttributionError(f"{values.size} segment values for {len(spans)} segments")
    mask = query_token_mask(tokens, query_span)
    n_query = int(mask.sum())
    if n_query == 0:
        return redistribute_uniform(n_tokens, advantage)
    shares = segment_credit(values, rule=credit, advantage=advantage, negative=negative)
    credit_t = token_credit(token_segment_weights(spans, tokens), shares)
    spread = redistribute_prop if redistribution == "prop" else redistribute_rank
    if outside == "zero":
        return spread(credit_t, advantage * n_tokens / n_query, mask)
    result = spread(credit_t, advantage, mask)
    result[~mask] = advantage
    return result
