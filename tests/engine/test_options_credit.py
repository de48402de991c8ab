"""The engine's credit options on real rollouts: per-group errors, query extraction and the
attributed-query limit, clipping of redistributed tokens only, search depth, credit rules,
the `negative` mode and unmeasured segments. Hash-encoder retriever (fast, deterministic)."""

from __future__ import annotations

import asyncio
import math
import re
from typing import Any

import numpy as np
import pytest

from service.attribution import (
    coalition_seed,
    extract_query,
    ndcg_at_k,
    segment,
    segment_credit,
)
from service.engine import AttributionEngine, EncodeBatcher, Limits
from service.errors import InvalidRequest, UnknownQuery, UnknownRetriever
from service.schemas import AttributeRequest

WORDS = re.compile(r"\S+")


def offsets(text: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in WORDS.finditer(text)]


def describe(catalog: Any, query_id: str) -> str:
    attrs = catalog.query_attributes[query_id]
    noun = attrs["category"].replace("-", " ").rstrip("s")
    head = " ".join(a for a in (attrs.get("colour"), attrs.get("material"), noun) if a)
    extra = [attrs[key] for key in ("feature", "gender", "size", "brand") if key in attrs]
    return ", ".join([head, *extra])


def group(catalog: Any, query_id: str, gid: str | None = None) -> dict[str, Any]:
    good = describe(catalog, query_id)
    texts = [
        f"<think>the shopper wants this</think><answer>please, {good}, thanks</answer>",
        "<answer>I think something nice, thanks</answer>",
        good,
        "please help me, I think, thanks a lot",
    ]
    return {
        "id": gid or query_id,
        "target": {"query_id": query_id},
        "responses": [{"text": t, "token_offsets": offsets(t)} for t in texts],
    }


def run(engine: AttributionEngine, groups: list[dict[str, Any]], **options: Any) -> Any:
    body = {"groups": groups, "options": {"max_width": 4, "max_coalitions": 24, "k": 50, **options}}
    return asyncio.run(engine.attribute(AttributeRequest.model_validate(body)))


def numbers(group_out: Any) -> list[Any]:
    return [
        (r.reward, r.advantage, [(s.value, s.credit) for s in r.segments], r.token_advantages)
        for r in group_out.responses
    ]


@pytest.fixture
def engine(registry: Any, cache: Any) -> AttributionEngine:
    return AttributionEngine(registry, cache, batcher=EncodeBatcher(window_s=0))


# ----------------------------------------------------------------------- per-group errors


def test_errors_group_scores_the_other_groups_exactly_as_without_the_bad_one(
    registry: Any, small_catalog: Any
) -> None:
    qids = list(small_catalog.queries)[:3]
    good = [group(small_catalog, q) for q in qids]
    bad = {**group(small_catalog, qids[0], "bad"), "target": {"query_id": "no-such-query"}}
    fresh = lambda: AttributionEngine(registry, None, batcher=EncodeBatcher(window_s=0))  # noqa: E731
    without = run(fresh(), good, errors="group")
    mixed = run(fresh(), [good[0], bad, good[1], good[2]], errors="group")
    assert [g.id for g in mixed.groups] == [qids[0], "bad", qids[1], qids[2]]
    failed = mixed.groups[1]
    assert failed.responses == [] and failed.error is not None
    assert failed.error.code == "unknown_query"
    assert failed.error.field == "groups[1].target.query_id"
    for ours, theirs in zip([mixed.groups[0], *mixed.groups[2:]], without.groups, strict=True):
        assert numbers(ours) == numbers(theirs)
    assert mixed.stats.group_errors == 1 and without.stats.group_errors == 0
    with pytest.raises(UnknownQuery):  # the default stays strict
        run(fresh(), [good[0], bad])


def test_errors_group_turns_a_per_group_limit_into_a_group_error(
    engine: AttributionEngine, small_catalog: Any
) -> None:
    engine.limits = Limits(max_text_chars=60)
    qids = list(small_catalog.queries)[:2]
    long_answer = {
        "id": "long",
        "target": {"query_id": qids[0]},
        "responses": [{"text": "<answer>" + "red leather boots " * 10 + "</answer>"}],
    }
    result = run(engine, [long_answer, group(small_catalog, qids[1])], errors="group")
    error = result.groups[0].error
    assert error is not None and error.code == "invalid_request"
    assert error.field == "groups[0].responses[0].text" and "max_text_chars=60" in error.message
    assert result.groups[1].error is None and len(result.groups[1].responses) == 4


def test_request_wide_errors_still_fail_the_request(
    engine: AttributionEngine, small_catalog: Any
) -> None:
    with pytest.raises(UnknownRetriever):
        run(engine, [group(small_catalog, "demo-0000")], errors="group", retriever="nope")
    with pytest.raises(InvalidRequest, match="options.depth"):
        run(engine, [group(small_catalog, "demo-0000")], errors="group", depth=0)


# ----------------------------------------------------------------------- extraction, limits


def test_reasoning_never_reaches_the_retriever_and_does_not_count_against_the_query_limit(
    engine: AttributionEngine, small_catalog: Any
) -> None:
    answer = describe(small_catalog, "demo-0000")
    reasoning = "<think>" + "I should think about what the shopper wants here. " * 1200
    texts = {
        "answer": f"<answer>{answer}</answer>",
        "closed": reasoning + f"</think><answer>{answer}</answer>",
        "bare": reasoning + f"</think> {answer}",
        "unclosed_answer": reasoning + f"</think><answer>{answer}",
    }
    assert len(texts["closed"]) > 60_000
    groups = [
        {"id": name, "target": {"query_id": "demo-0000"}, "responses": [{"text": t}]}
        for name, t in texts.items()
    ]
    result = run(engine, groups, explain=True)
    reference = result.groups[0].responses[0]
    for g in result.groups[1:]:
        response = g.responses[0]
        assert [s.text for s in response.segments] == [s.text for s in reference.segments]
        assert [s.value for s in response.segments] == [s.value for s in reference.segments]
        assert response.reward == reference.reward
        assert all("think" not in c.query for c in response.coalitions or [])
    # An unclosed <think> with no answer is all reasoning: no query, reward 0.
    only_thinking = run(
        engine, [{"target": {"query_id": "demo-0000"}, "responses": [{"text": reasoning}]}]
    )
    assert only_thinking.groups[0].responses[0].segments == []
    assert only_thinking.groups[0].responses[0].reward == 0.0


def test_query_tag_picks_the_tag_that_holds_the_query(
    engine: AttributionEngine, small_catalog: Any
) -> None:
    answer = describe(small_catalog, "demo-0000")
    text = f"<think>plan</think><search>{answer}</search><answer>done</answer>"
    result = run(
        engine,
        [{"target": {"query_id": "demo-0000"}, "responses": [{"text": text}]}],
        query_tag="search",
    )
    segments = result.groups[0].responses[0].segments
    start, end = extract_query(text, None, "search")
    assert text[segments[0].start : segments[-1].end] == text[start:end] == answer


def test_the_whole_response_has_its_own_larger_bound(
    engine: AttributionEngine, small_catalog: Any
) -> None:
    engine.limits = Limits(max_response_chars=1000)
    text = "<think>" + "x" * 1000 + "</think><answer>red boots</answer>"
    with pytest.raises(InvalidRequest, match="max_response_chars=1000"):
        run(engine, [{"target": {"query_id": "demo-0000"}, "responses": [{"text": text}]}])


# ----------------------------------------------------------------------- clipping


def test_clipping_is_off_by_default_and_spares_uniform_responses(
    engine: AttributionEngine, small_catalog: Any
) -> None:
    groups = [group(small_catalog, q) for q in list(small_catalog.queries)[:2]]
    plain = run(engine, groups)
    assert plain.clip_bound is None
    clipped = run(engine, groups, clip=0.5)
    advantages = np.array([r.advantage for g in clipped.groups for r in g.responses])
    bound = 0.5 * float(advantages.std())
    assert clipped.clip_bound == pytest.approx(bound)
    saw_clip = False
    for g_plain, g_clip in zip(plain.groups, clipped.groups, strict=True):
        for r_plain, r_clip in zip(g_plain.responses, g_clip.responses, strict=True):
            assert r_plain.redistributed == r_clip.redistributed
            if r_clip.redistributed:
                expected = np.clip(r_plain.token_advantages, -bound, bound)
                assert r_clip.token_advantages == pytest.approx(expected.tolist())
                saw_clip |= bool(np.any(np.abs(r_plain.token_advantages) > bound))
            else:
                assert r_clip.token_advantages == r_plain.token_advantages
    assert saw_clip
    uniform = run(engine, groups, clip=0.1, redistribution="uniform")
    for g in uniform.groups:
        for r in g.responses:
            assert not r.redistributed
            assert r.token_advantages == [r.advantage] * len(r.token_advantages)


# ----------------------------------------------------------------------- search depth


def test_depth_searches_before_the_pool_filter_and_k_cuts_after(
    registry: Any, retriever: Any, small_catalog: Any
) -> None:
    query_id = "demo-0000"
    labels = small_catalog.labels[query_id]
    text = "something nice to buy"  # a vague query: the labelled products rank low
    ranked = [
        pid
        for pid, _ in retriever.search_vectors(
            retriever.encoder.encode([text]), len(retriever.index.ids)
        )[0]
    ]
    # A pool of the labelled products plus products ranked far down: with the search cut at
    # k (the old behaviour) most of the pool is never seen.
    pool = sorted(set(labels) | set(ranked[-40:]))
    body = [{"target": {"query_id": query_id}, "pool": pool, "responses": [{"text": text}]}]
    engine = AttributionEngine(registry, None, batcher=EncodeBatcher(window_s=0))
    deep = run(engine, body, k=5, depth=1000, max_coalitions=2).groups[0].responses[0]
    shallow = run(engine, body, k=5, depth=5, max_coalitions=2).groups[0].responses[0]
    assert deep.reward == pytest.approx(ndcg_at_k(ranked, labels, 5, pool))
    assert shallow.reward == pytest.approx(ndcg_at_k(ranked[:5], labels, 5, pool))
    assert deep.reward > shallow.reward


def test_depth_is_part_of_the_cache_key(engine: AttributionEngine, small_catalog: Any) -> None:
    body = [group(small_catalog, "demo-0000")]
    first = run(engine, body, depth=100)
    again = run(engine, body, depth=100)
    other = run(engine, body, depth=50)
    assert again.stats.cache_hits == again.stats.unique_queries > 0
    assert first.stats.cache_hits == 0 and other.stats.cache_hits == 0


# ----------------------------------------------------------------------- credit and blame


@pytest.mark.parametrize("credit", ["positive", "minmax"])
@pytest.mark.parametrize("negative", ["same", "inverse"])
def test_reported_credit_is_the_share_the_tokens_get(
    engine: AttributionEngine, small_catalog: Any, credit: str, negative: str
) -> None:
    groups = [group(small_catalog, q) for q in list(small_catalog.queries)[:3]]
    result = run(engine, groups, credit=credit, negative=negative)
    for g in result.groups:
        for r in g.responses:
            if not r.segments:
                continue
            phi = np.array([np.nan if s.value is None else s.value for s in r.segments])
            expected = segment_credit(phi, rule=credit, advantage=r.advantage, negative=negative)
            assert [s.credit for s in r.segments] == pytest.approx(expected.tolist())
            if r.redistributed and r.token_advantages:
                assert float(np.mean(r.token_advantages)) == pytest.approx(r.advantage)


def test_positive_credit_never_zeroes_a_helpful_segment(
    engine: AttributionEngine, small_catalog: Any
) -> None:
    result = run(engine, [group(small_catalog, q) for q in list(small_catalog.queries)[:4]])
    positive = [
        s for g in result.groups for r in g.responses for s in r.segments if (s.value or 0) > 0
    ]
    assert positive and all(s.credit > 0 for s in positive)
    minmax = run(
        engine, [group(small_catalog, q) for q in list(small_catalog.queries)[:4]], credit="minmax"
    )
    assert any(s.credit == 0.0 for g in minmax.groups for r in g.responses for s in r.segments), (
        "min-max zeroes the lowest segment of every response"
    )


# ----------------------------------------------------------------------- unmeasured segments


def test_unmeasured_segments_are_null_and_take_the_mean_share(
    engine: AttributionEngine, small_catalog: Any
) -> None:
    text = "red, leather, boots, for, women, size, eight, waterproof, with, laces"
    n = len(segment(text, "word"))
    result = run(
        engine,
        [{"target": {"query_id": "demo-0000"}, "responses": [{"text": text}]}],
        segmenter="word",
        max_coalitions=n // 2,  # fewer than n + 2: some segments get no pair
        explain=True,
    )
    response = result.groups[0].responses[0]
    unmeasured = [s for s in response.segments if s.value is None]
    measured = [s for s in response.segments if s.value is not None]
    assert unmeasured and measured
    # Which segments have a pair follows from the evaluated coalitions.
    evaluated = {frozenset(c.members) for c in response.coalitions or []} | {frozenset()}
    for i, s in enumerate(response.segments):
        has_pair = any(c | {i} in evaluated for c in evaluated if i not in c)
        assert has_pair == (s.value is not None)
    mean_measured = sum(s.credit for s in measured) / len(measured)
    for s in unmeasured:
        assert s.credit == pytest.approx(mean_measured)
    assert sum(s.credit for s in response.segments) == pytest.approx(1.0)
    # The plan is the coverage-first sample seeded by (seed, query).
    assert coalition_seed(0, text) == coalition_seed(0, text)
    payload = result.model_dump_json()
    assert '"value":null' in payload and not math.isnan(response.reward)


def test_owen_sum_is_accepted_and_differs_from_owen_on_windows(
    engine: AttributionEngine, small_catalog: Any
) -> None:
    body = [group(small_catalog, "demo-0000")]
    mean = run(engine, body, estimator="owen", max_width=8, max_coalitions=96)
    total = run(engine, body, estimator="owen-sum", max_width=8, max_coalitions=96)
    values = lambda res: [s.value for r in res.groups[0].responses for s in r.segments]  # noqa: E731
    assert values(mean) != values(total)
    assert mean.stats.cache_hits == 0 and total.stats.cache_hits == total.stats.unique_queries
