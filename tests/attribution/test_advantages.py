"""Group baselines, the token-segment matrix and the redistribution of Â over tokens."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from service.attribution import (
    CREDIT_RULES,
    NEGATIVE_MODES,
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


def test_segment_credit_minmax():
    # The authors' rule, kept for reproduction: the lowest segment always gets 0.
    def minmax(phi):
        return segment_credit(phi, rule="minmax")

    np.testing.assert_allclose(minmax([0.2, 0.6, 1.0]), [0, 0.5 / 1.5, 1 / 1.5])
    np.testing.assert_allclose(minmax([-1.0, 1.0]), [0.0, 1.0])
    np.testing.assert_allclose(minmax([0.3, 0.35]), [0.0, 1.0])  # two segments: winner takes all
    np.testing.assert_allclose(minmax([0.0, 0.0, 0.0]), [1 / 3] * 3)
    np.testing.assert_allclose(minmax([0.4, 0.4]), [0.5, 0.5])
    assert minmax([]).shape == (0,)


def test_segment_credit_positive_by_hand():
    np.testing.assert_allclose(segment_credit([0.2, 0.6, 1.0]), [0.2 / 1.8, 0.6 / 1.8, 1 / 1.8])
    np.testing.assert_allclose(segment_credit([0.3, 0.35]), [0.3 / 0.65, 0.35 / 0.65])
    np.testing.assert_allclose(segment_credit([-1.0, 1.0, 3.0]), [0.0, 0.25, 0.75])
    np.testing.assert_allclose(segment_credit([0.0, 0.0, 0.0]), [1 / 3] * 3)
    np.testing.assert_allclose(segment_credit([-0.2, -0.1]), [0.5, 0.5])  # none positive
    np.testing.assert_allclose(segment_credit([1e300, 1e300]), [0.5, 0.5])  # no overflow
    assert segment_credit([]).shape == (0,)
    assert CREDIT_RULES == ("positive", "minmax") and NEGATIVE_MODES == ("same", "inverse")


def test_segment_credit_unmeasured_segments_get_the_mean_share():
    # 2 measured (shares 0.25, 0.75 among themselves) and 1 unmeasured: the unmeasured one
    # gets the mean measured share, then everything is renormalised: 1/3 each on average.
    np.testing.assert_allclose(
        segment_credit([1.0, np.nan, 3.0]), [0.25 * 2 / 3, 1 / 3, 0.75 * 2 / 3]
    )
    np.testing.assert_allclose(
        segment_credit([1.0, np.nan, 3.0], rule="minmax"), [0.0, 1 / 3, 2 / 3]
    )
    np.testing.assert_allclose(segment_credit([np.nan, np.nan]), [0.5, 0.5])
    np.testing.assert_allclose(segment_credit([np.nan, -1.0]), [0.5, 0.5])
    # Infinite values carry no usable ranking: uniform, like every other degenerate case.
    np.testing.assert_allclose(segment_credit([np.inf, 1.0, np.nan]), [1 / 3] * 3)
    np.testing.assert_allclose(segment_credit([-np.inf, 1.0], rule="minmax"), [0.5, 0.5])


def test_segment_credit_negative_modes_by_hand():
    phi = [0.5, -0.25, 0.0, 0.25]
    np.testing.assert_allclose(
        segment_credit(phi, advantage=-1.0, negative="inverse"), [0.0, 1.0, 0.0, 0.0]
    )
    np.testing.assert_allclose(
        segment_credit(phi, rule="minmax", advantage=-1.0, negative="inverse"),
        np.array([0.0, 0.75, 0.5, 0.25]) / 1.5,
    )
    # "same" (the paper): blame goes where the credit would.
    np.testing.assert_allclose(
        segment_credit(phi, advantage=-1.0, negative="same"), [2 / 3, 0.0, 0.0, 1 / 3]
    )
    # A positive (or zero) advantage is never inverted.
    for advantage in (0.0, 0.7):
        np.testing.assert_allclose(
            segment_credit(phi, advantage=advantage, negative="inverse"), segment_credit(phi)
        )
    with pytest.raises(UnknownOptionError):
        segment_credit(phi, rule="softmax")
    with pytest.raises(UnknownOptionError):
        segment_credit(phi, negative="flip")


measured_values = st.floats(-5, 5, allow_nan=False, allow_subnormal=False)
phi_with_gaps = st.lists(st.one_of(measured_values, st.just(float("nan"))), min_size=1, max_size=12)


@settings(max_examples=200, deadline=None)
@given(phi=phi_with_gaps, rule=st.sampled_from(CREDIT_RULES))
def test_credit_shares_are_a_distribution(phi, rule):
    shares = segment_credit(phi, rule=rule)
    assert shares.shape == (len(phi),)
    assert (shares >= 0).all()
    assert shares.sum() == pytest.approx(1.0, abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(phi=phi_with_gaps)
def test_positive_rule_properties(phi):
    values = np.array(phi)
    shares = segment_credit(values)
    measured = ~np.isnan(values)
    positive = measured & (values > 0)
    if not positive.any():  # nothing helped: uniform, so the response still carries Â
        np.testing.assert_allclose(shares, 1 / len(phi))
        return
    assert (shares[positive] > 0).all()  # a helpful segment never gets 0
    assert (shares[measured & (values <= 0)] == 0).all()
    for i in np.flatnonzero(measured):  # the order follows the values
        for j in np.flatnonzero(measured):
            if values[i] > values[j] and values[i] > 0:
                assert shares[i] > shares[j]
            elif values[i] == values[j]:
                assert shares[i] == pytest.approx(shares[j], abs=1e-15)


@settings(max_examples=200, deadline=None)
@given(phi=phi_with_gaps, rule=st.sampled_from(CREDIT_RULES), scale=st.floats(1e-3, 1e3))
def test_credit_is_invariant_to_scaling_the_values(phi, rule, scale):
    values = np.array(phi)
    np.testing.assert_allclose(
        segment_credit(values * scale, rule=rule), segment_credit(values, rule=rule),
        rtol=1e-9, atol=1e-12,
    )  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(phi=phi_with_gaps, rule=st.sampled_from(CREDIT_RULES))
def test_unmeasured_segments_get_the_mean_measured_share(phi, rule):
    values = np.array(phi)
    measured = ~np.isnan(values)
    shares = segment_credit(values, rule=rule)
    m, total = int(measured.sum()), len(phi)
    if m == 0:
        np.testing.assert_allclose(shares, 1 / total)
        return
    np.testing.assert_allclose(shares[~measured], 1 / total)
    np.testing.assert_allclose(
        shares[measured], segment_credit(values[measured], rule=rule) * m / total, atol=1e-12
    )


@settings(max_examples=200, deadline=None)
@given(
    phi=st.lists(measured_values, min_size=1, max_size=12),
    rule=st.sampled_from(CREDIT_RULES),
    advantage=st.floats(-5, -1e-6),
)
def test_inverse_puts_the_largest_blame_on_the_lowest_valued_segment(phi, rule, advantage):
    values = np.array(phi)
    blame = segment_credit(values, rule=rule, advantage=advantage, negative="inverse")
    lowest = int(np.argmin(values))
    assert blame[lowest] == pytest.approx(blame.max(), abs=1e-15)
    np.testing.assert_allclose(blame, segment_credit(-values, rule=rule))
    others = np.delete(values, lowest)
    # A unique minimum, by a margin the float arithmetic can resolve, gets strictly the most.
    clear_low = len(phi) > 1 and others.min() - values[lowest] > 1e-9 * np.abs(values).max()
    if clear_low and (rule == "minmax" or values[lowest] < 0):
        assert (blame[np.arange(len(phi)) != lowest] < blame[lowest]).all()
    # "same" keeps the paper's rule: blame follows credit.
    np.testing.assert_allclose(
        segment_credit(values, rule=rule, advantage=advantage, negative="same"),
        segment_credit(values, rule=rule),
    )


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


@settings(max_examples=300, deadline=None)
@given(
    phi=st.lists(st.one_of(finite, st.just(float("nan"))), min_size=1, max_size=8),
    advantage=finite,
    prefix=st.integers(0, 20),
    suffix=st.integers(0, 20),
    redistribution=st.sampled_from(["prop", "rank", "uniform"]),
    outside=st.sampled_from(["advantage", "zero"]),
    credit=st.sampled_from(CREDIT_RULES),
    negative=st.sampled_from(NEGATIVE_MODES),
)
def test_token_advantages_mean_is_the_advantage(
    phi, advantage, prefix, suffix, redistribution, outside, credit, negative
):
    # For every credit rule and negative mode, with unmeasured (NaN) segments too.
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
        credit=credit,
        negative=negative,
    )
    assert out.shape == (len(offsets),)
    assert np.isfinite(out).all()
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


def test_token_advantages_pass_the_credit_options_through():
    # Three one-token segments; the token advantages follow segment_credit's shares exactly.
    spans = [(0, 3), (4, 7), (8, 11)]
    offsets = [(0, 3), (4, 7), (8, 11)]
    phi = [0.6, 0.2, -0.2]

    def run(advantage, **options):
        return token_advantages(
            segment_spans=spans, phi=phi, token_offsets=offsets, query_span=(0, 11),
            advantage=advantage, redistribution="prop", **options,
        )  # fmt: skip

    np.testing.assert_allclose(run(1.0), 3 * np.array([0.75, 0.25, 0.0]))
    np.testing.assert_allclose(run(1.0, credit="minmax"), 3 * np.array([2 / 3, 1 / 3, 0.0]))
    np.testing.assert_allclose(run(-1.0), -3 * np.array([0.75, 0.25, 0.0]))
    np.testing.assert_allclose(run(-1.0, negative="inverse"), -3 * np.array([0.0, 0.0, 1.0]))
    np.testing.assert_allclose(
        run(-1.0, credit="minmax", negative="inverse"), -3 * np.array([0.0, 1 / 3, 2 / 3])
    )
    np.testing.assert_allclose(run(2.0, negative="inverse"), run(2.0))


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
    for option in ({"credit": "softmax"}, {"negative": "flip"}):
        for redistribution in ("prop", "uniform"):
            with pytest.raises(UnknownOptionError):
                token_advantages(
                    segment_spans=[(0, 3)], phi=[1.0], redistribution=redistribution,
                    **option, **kwargs,
                )  # fmt: skip
    with pytest.raises(AttributionError):
        token_segment_weights([(3, 1)], [(0, 1)])
