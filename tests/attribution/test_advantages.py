"""Group baselines, the token-segment matrix and the redistribution of Â over tokens."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from service.attribution import (
    AttributionError,
    UnknownOptionError,
    average_ranks,
    clip_advantages,
    group_advantages,
    redistribute_prop,
    redistribute_rank,
    redistribute_uniform,
    segment_credit,
    token_advantages,
    token_credit,
    token_segment_weights,
)

finite = st.floats(-5, 5, allow_nan=False)
credits_strategy = st.lists(st.floats(0, 10, allow_nan=False), min_size=1, max_size=40)


def test_group_norm_by_hand():
    rewards = [1.0, 0.0, 0.5, 0.5]
    std = math.sqrt((0.25 + 0.25 + 0 + 0) / 3)  # ddof = 1
    np.testing.assert_allclose(
        group_advantages(rewards), np.array([0.5, -0.5, 0, 0]) / (std + 1e-6)
    )
    np.testing.assert_allclose(group_advantages(rewards, "dr_grpo"), [0.5, -0.5, 0, 0])
    np.testing.assert_allclose(
        group_advantages(rewards, "rloo"),
        [1 - (0 + 0.5 + 0.5) / 3, 0 - (1 + 0.5 + 0.5) / 3, 0.5 - 1.5 / 3, 0.5 - 1.5 / 3],
    )


def test_group_of_one_and_equal_rewards():
    for baseline in ("group_norm", "dr_grpo", "rloo"):
        assert group_advantages([0.7], baseline).tolist() == [0.0]
        np.testing.assert_allclose(group_advantages([0.3] * 8, baseline), np.zeros(8), atol=1e-9)
        assert group_advantages([], baseline).shape == (0,)
    with pytest.raises(UnknownOptionError):
        group_advantages([1, 2], "ppo")


def test_token_segment_weights_by_hand():
    segments = [(0, 5), (6, 10)]
    tokens = [(0, 3), (3, 7), (7, 10), (10, 10), (12, 15)]
    W = token_segment_weights(segments, tokens)
    # token (3,7): 2 chars in segment 0, 1 char in segment 1 -> 2/4, 1/4 -> normalised 2/3, 1/3
    expected = np.array([[1, 2 / 3, 0, 0, 0], [0, 1 / 3, 1, 0, 0]])
    np.testing.assert_allclose(W, expected)
    np.testing.assert_allclose(
        token_credit(W, [0.25, 0.75]), [0.25, 0.25 / 3 * 2 + 0.25, 0.75, 0, 0]
    )


def test_segment_credit():
    np.testing.assert_allclose(segment_credit([0.2, 0.6, 1.0]), [0, 0.5 / 1.5, 1 / 1.5])
    np.testing.assert_allclose(segment_credit([-1.0, 1.0]), [0.0, 1.0])
    np.testing.assert_allclose(segment_credit([0.0, 0.0, 0.0]), [1 / 3] * 3)
    np.testing.assert_allclose(segment_credit([0.4, 0.4]), [0.5, 0.5])
    assert segment_credit([]).shape == (0,)


@settings(max_examples=100, deadline=None)
@given(credits=credits_strategy, advantage=finite, data=st.data())
def test_token_mean_equals_advantage(credits, advantage, data):
    mask = np.array(
        data.draw(st.lists(st.booleans(), min_size=len(credits), max_size=len(credits)))
    )
    assume(mask.any())
    for redistribute in (redistribute_prop, redistribute_rank):
        out = redistribute(credits, advantage, mask)
        assert out[mask].mean() == pytest.approx(advantage, abs=1e-9)
        assert (out[~mask] == 0).all()
    assert redistribute_uniform(len(credits), advantage).mean() == pytest.approx(advantage)


@settings(max_examples=100, deadline=None)
@given(
    phi=st.lists(finite, min_size=1, max_size=8),
    advantage=finite,
    prefix=st.integers(0, 20),
    suffix=st.integers(0, 20),
    redistribution=st.sampled_from(["prop", "rank", "uniform"]),
    outside=st.sampled_from(["advantage", "zero"]),
)
def test_token_advantages_mean_is_the_advantage(
    phi, advantage, prefix, suffix, redistribution, outside
):
    # A query of len(phi) 4-char words after `prefix` chars of reasoning, tokens of 3 chars.
    words = [f"w{i:02d}x" for i in range(len(phi))]
    query = " ".join(words)
    text = "r" * prefix + query + "e" * suffix
    query_span = (prefix, prefix + len(query))
    spans = [(prefix + 5 * i, prefix + 5 * i + 4) for i in range(len(phi))]
    offsets = [(s, min(s + 3, len(text))) for s in range(0, len(text), 3)] + [
        (len(text), len(text))
    ]
    out = token_advantages(
        segment_spans=spans,
        phi=phi,
        token_offsets=offsets,
        query_span=query_span,
        advantage=advantage,
        redistribution=redistribution,
        outside=outside,
    )
    assert out.shape == (len(offsets),)
    assert out.mean() == pytest.approx(advantage, abs=1e-9)
    inside = np.array([min(e, query_span[1]) > max(s, query_span[0]) for s, e in offsets])
    if redistribution == "uniform":
        np.testing.assert_allclose(out, advantage)
    elif outside == "advantage":
        np.testing.assert_allclose(out[~inside], advantage)
    else:
        np.testing.assert_allclose(out[~inside], 0.0)


@settings(max_examples=100, deadline=None)
@given(credits=credits_strategy, advantage=st.floats(0.01, 5))
def test_rank_is_monotone_in_credit(credits, advantage):
    out = redistribute_rank(credits, advantage)
    for i in range(len(credits)):
        for j in range(len(credits)):
            if credits[i] > credits[j]:
                assert out[i] > out[j]
            elif credits[i] == credits[j]:
                assert out[i] == pytest.approx(out[j])


def test_rank_is_ascending_with_average_ties():
    np.testing.assert_allclose(average_ranks(np.array([0.5, 0.1, 0.5, 0.9])), [2.5, 1, 2.5, 4])
    out = redistribute_rank([0.5, 0.1, 0.5, 0.9], 1.0)
    np.testing.assert_allclose(out, 4 * np.array([2.5, 1, 2.5, 4]) / 10)


def test_prop_by_hand():
    np.testing.assert_allclose(redistribute_prop([1, 0, 3], 2.0), 3 * np.array([1, 0, 3]) / 4 * 2)


@pytest.mark.parametrize("redistribute", [redistribute_prop, redistribute_rank])
def test_zero_reward_fallback_keeps_the_negative_advantage(redistribute):
    # All segments equally useless (all φ = 0, e.g. reward 0): uniform, still carries Â < 0.
    spans = [(0, 4), (5, 9), (10, 14)]
    offsets = [(0, 2), (2, 4), (5, 9), (10, 14)]
    out = token_advantages(
        segment_spans=spans,
        phi=[0.0, 0.0, 0.0],
        token_offsets=offsets,
        query_span=(0, 14),
        advantage=-0.8,
        redistribution="prop" if redistribute is redistribute_prop else "rank",
    )
    np.testing.assert_allclose(out, -0.8)
    np.testing.assert_allclose(redistribute(np.zeros(5), -0.8), -0.8)


@settings(max_examples=100, deadline=None)
@given(
    tokens=st.lists(st.floats(-20, 20, allow_nan=False), min_size=1, max_size=30),
    batch=st.lists(finite, min_size=1, max_size=16),
    clip=st.floats(0.1, 4),
)
def test_clipping_bound(tokens, batch, clip):
    bound = clip * float(np.std(batch))
    out = clip_advantages(tokens, clip, batch)
    assert (np.abs(out) <= bound + 1e-12).all()
    inside = np.abs(tokens) <= bound
    np.testing.assert_allclose(out[inside], np.asarray(tokens)[inside])
    np.testing.assert_allclose(clip_advantages(tokens, None, batch), tokens)


def test_clip_by_hand_and_invalid_clip():
    out = clip_advantages([3.0, -3.0, 0.5], 2.0, [1.0, -1.0])  # std 1 -> bound 2
    np.testing.assert_allclose(out, [2.0, -2.0, 0.5])
    with pytest.raises(AttributionError):
        clip_advantages([1.0], 0.0, [1.0])


@settings(max_examples=60, deadline=None)
@given(credits=credits_strategy, advantage=finite)
def test_length_invariance(credits, advantage):
    # Twice as long, same credit pattern: same mean advantage; PROP also keeps every token's
    # value (the ×T factor cancels the longer normaliser).
    doubled = np.tile(credits, 2)
    for redistribute in (redistribute_prop, redistribute_rank):
        short, long = redistribute(credits, advantage), redistribute(doubled, advantage)
        assert long.mean() == pytest.approx(short.mean(), abs=1e-9)
        assert long.mean() == pytest.approx(advantage, abs=1e-9)
    np.testing.assert_allclose(
        redistribute_prop(doubled, advantage),
        np.tile(redistribute_prop(credits, advantage), 2),
        atol=1e-9,
    )


def test_length_invariance_through_token_advantages():
    def response(repeats):
        spans, offsets = [], []
        for r in range(repeats):
            base = 20 * r
            spans += [(base, base + 9), (base + 10, base + 19)]
            offsets += [(base, base + 4), (base + 4, base + 9), (base + 10, base + 19)]
        query_span = (0, 20 * repeats - 1)
        phi = [0.9, 0.1] * repeats
        return token_advantages(
            segment_spans=spans, phi=phi, token_offsets=offsets, query_span=query_span,
            advantage=1.5, redistribution="prop",
        )  # fmt: skip

    once, twice = response(1), response(2)
    assert once.mean() == pytest.approx(1.5) and twice.mean() == pytest.approx(1.5)
    np.testing.assert_allclose(twice, np.tile(once, 2))
    assert once[0] > once[2]  # the high-value segment's tokens get more


def test_token_advantages_input_errors():
    kwargs = dict(token_offsets=[(0, 3)], query_span=(0, 3), advantage=1.0)
    with pytest.raises(AttributionError):
        token_advantages(segment_spans=[(0, 3)], phi=[1.0, 2.0], redistribution="prop", **kwargs)
    with pytest.raises(UnknownOptionError):
        token_advantages(segment_spans=[(0, 3)], phi=[1.0], redistribution="hybrid", **kwargs)
    with pytest.raises(UnknownOptionError):
        token_advantages(
            segment_spans=[(0, 3)], phi=[1.0], redistribution="prop", outside="x", **kwargs
        )
    with pytest.raises(AttributionError):
        token_segment_weights([(3, 1)], [(0, 1)])
