"""Benchmark of the pure OSPO math for one GRPO group (no retrieval, synthetic values).

Per group: G = 8 responses of ~10 phrase segments each; for each response, segmentation,
a seeded coalition plan (max_width 8, M 96), the owen estimator over a synthetic value
table, then the group advantages and each response's token advantages (PROP). Next to it,
a naive pure-Python reference of the same math (dict/loop estimator over all pairs, loop
token mapping) with the same segmenter, and their ratio.

Run:  cd /work/main && .venv/bin/python bench/core.py [--runs 300]
"""

from __future__ import annotations

import argparse
import math
import random
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

# `python bench/core.py` puts bench/ first on sys.path, where bench/service.py would shadow the
# `service` package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.attribution import (  # noqa: E402
    coalition_plan,
    coalition_seed,
    extract_query,
    group_advantages,
    owen_values,
    segment_phrases,
    token_advantages,
)

G = 8
MAX_WIDTH = 8
MAX_COALITIONS = 96
SEED = 0

QUERIES = [
    "waterproof leather hiking boots for women, size 8, with ankle support, in dark brown, "
    "for winter hikes, without laces, by merrell, with gore-tex lining and memory foam insole",
    "lightweight trail running shoes for men size 10 wide with rock plate, breathable mesh "
    "upper, for muddy trails, in black and neon green, under 100 dollars, by salomon",
    "kids rain jacket with hood, packable, for boys and girls, size small, in bright yellow, "
    "with reflective strips, machine washable, by columbia, for school",
    "ceramic coffee mug set pack of 4 with handles, microwave safe, dishwasher safe, in matte "
    "grey, for office and home, 12 oz each, with gift box",
    "queen size bed frame with headboard, solid wood, in walnut, with storage drawers, "
    "for small bedrooms, without box spring, by zinus, easy assembly",
    "stainless steel water bottle 32 oz with straw lid, insulated, for hiking and gym, "
    "in navy blue, leak proof, bpa free, by hydro flask",
    "noise cancelling wireless headphones over ear, with microphone, for travel, in black, "
    "40 hour battery, with carrying case, by sony, bluetooth 5.2",
    "ergonomic office chair with lumbar support, mesh back, for long hours, adjustable "
    "armrests, in grey, under 300 dollars, by herman miller, with headrest",
]
_TOKEN_RE = re.compile(r"\s*(?:\w+|[^\w\s])")


def make_group() -> list[dict[str, object]]:
    """Responses with a reasoning prefix, the query in <answer> tags, tokens and a reward."""
    rng = np.random.default_rng(7)
    responses = []
    for query in QUERIES[:G]:
        text = f"<think>the user wants {query.split(',')[0]}</think><answer>{query}</answer>"
        offsets = [(m.start(), m.end()) for m in _TOKEN_RE.finditer(text)] + [
            (len(text), len(text))
        ]
        responses.append({"text": text, "offsets": offsets, "reward": float(rng.random())})
    return responses


def _synthetic_value(members: frozenset[int]) -> float:
    """A deterministic stand-in for the retrieval NDCG of a partial query."""
    total = sum(math.sin(1.3 * i + 0.7) for i in members) + 0.1 * len(members)
    return 1.0 / (1.0 + math.exp(-total))


# What retrieval would return, computed once outside the timed code: every window of up to
# 30 segments, so both pipelines only look values up.
VALUES = {
    frozenset(range(a, b)): _synthetic_value(frozenset(range(a, b)))
    for a in range(30)
    for b in range(a + 1, 31)
}


def synthetic_value(members: frozenset[int]) -> float:
    return VALUES[members]


# ------------------------------------------------------------------------------ ours


def ours_plan(n: int, query: str) -> list[frozenset[int]]:
    rng = np.random.default_rng(coalition_seed(SEED, query))
    return coalition_plan(
        n, estimator="owen", max_width=MAX_WIDTH, max_coalitions=MAX_COALITIONS, rng=rng
    )


def ours_group(group: list[dict[str, object]]) -> list[np.ndarray]:
    phis, spans_of, query_spans = [], [], []
    for response in group:
        text = str(response["text"])
        q_start, q_end = extract_query(text)
        query = text[q_start:q_end]
        spans = [(q_start + s, q_start + e) for s, e in segment_phrases(query)]
        plan = ours_plan(len(spans), query)
        values = {c: synthetic_value(c) for c in plan if c}
        phis.append(owen_values(len(spans), values))
        spans_of.append(spans)
        query_spans.append((q_start, q_end))
    advantages = group_advantages([float(r["reward"]) for r in group])  # type: ignore[arg-type]
    return [
        token_advantages(
            segment_spans=spans_of[i],
            phi=phis[i],
            token_offsets=group[i]["offsets"],  # type: ignore[arg-type]
            query_span=query_spans[i],
            advantage=float(advantages[i]),
            redistribution="prop",
        )
        for i in range(len(group))
    ]


# ------------------------------------------------------------------ naive reference


def naive_plan(n: int, query: str) -> list[frozenset[int]]:
    windows = [frozenset()]
    for width in range(1, min(MAX_WIDTH, n) + 1):
        for start in range(n - width + 1):
            windows.append(frozenset(range(start, start + width)))
    if MAX_WIDTH < n:
        windows.append(frozenset(range(n)))
    if len(windows) <= MAX_COALITIONS:
        return windows
    rest = windows[1:-1]
    chosen = random.Random(coalition_seed(SEED, query)).sample(rest, MAX_COALITIONS - 2)
    return [windows[0], *chosen, windows[-1]]


def naive_owen(n: int, values: dict[frozenset[int], float]) -> list[float]:
    """The Shapley-weighted mean of each segment's evaluated marginals (`owen`)."""
    values = {frozenset(): 0.0, **values}
    phi = [0.0] * n
    weight_sum = [0.0] * n
    for i in range(n):
        for members, value in values.items():
            if i in members:
                continue
            grown = members | {i}
            if grown in values:
                s = len(members)
                weight = math.factorial(s) * math.factorial(n - s - 1) / math.factorial(n)
                phi[i] += weight * (values[grown] - value)
                weight_sum[i] += weight
    return [p / w if w > 0 else math.nan for p, w in zip(phi, weight_sum, strict=True)]


def naive_tokens(
    spans: list[tuple[int, int]],
    phi: list[float],
    offsets: list[tuple[int, int]],
    query_span: tuple[int, int],
    advantage: float,
) -> list[float]:
    positive = [max(p, 0.0) for p in phi]  # credit = positive part, uniform when none
    if sum(positive) > 0:
        credit = [c / sum(positive) for c in positive]
    else:
        credit = [1 / len(phi)] * len(phi)
    token_credit, inside = [], []
    for start, end in offsets:
        weights = [
            max(0, min(end, e) - max(start, s)) / (end - start) if end > start else 0.0
            for s, e in spans
        ]
        total = sum(weights)
        token_credit.append(
            sum(w / total * c for w, c in zip(weights, credit, strict=True)) if total else 0.0
        )
        inside.append(min(end, query_span[1]) > max(start, query_span[0]))
    mass = sum(c for c, q in zip(token_credit, inside, strict=True) if q)
    count = sum(inside)
    return [
        (count * c / mass * advantage if mass > 0 else advantage) if q else advantage
        for c, q in zip(token_credit, inside, strict=True)
    ]


def naive_group(group: list[dict[str, object]]) -> list[list[float]]:
    rewards = [float(r["reward"]) for r in group]  # type: ignore[arg-type]
    mean, std = statistics.fmean(rewards), statistics.stdev(rewards)
    out = []
    for response, reward in zip(group, rewards, strict=True):
        text = str(response["text"])
        q_start, q_end = extract_query(text)
        query = text[q_start:q_end]
        spans = [(q_start + s, q_start + e) for s, e in segment_phrases(query)]
        plan = naive_plan(len(spans), query)
        phi = naive_owen(len(spans), {c: synthetic_value(c) for c in plan if c})
        advantage = (reward - mean) / (std + 1e-6)
        out.append(naive_tokens(spans, phi, response["offsets"], (q_start, q_end), advantage))  # type: ignore[arg-type]
    return out


# ------------------------------------------------------------------------- timing


def median_us(fn: Callable[[], object], runs: int) -> float:
    fn()  # warm up
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    group = make_group()
    queries = []
    for response in group:
        text = str(response["text"])
        q_start, q_end = extract_query(text)
        queries.append(text[q_start:q_end])
    n_segments = [len(segment_phrases(q)) for q in queries]
    tokens = [len(r["offsets"]) for r in group]  # type: ignore[arg-type]

    # Both pipelines compute the same numbers (no sampling happens at ~10 segments, w 8, M 96:
    # 54 windows, so the two plans are identical).
    for ours, naive in zip(ours_group(group), naive_group(group), strict=True):
        assert np.allclose(ours, naive, atol=1e-9)

    n = n_segments[0]
    plan = ours_plan(n, queries[0])
    values = {c: synthetic_value(c) for c in plan if c}

    rows = [
        ("segment_phrases", n, None, median_us(lambda: segment_phrases(queries[0]), args.runs)),
        (
            "coalition_plan",
            n,
            median_us(lambda: naive_plan(n, queries[0]), args.runs),
            median_us(lambda: ours_plan(n, queries[0]), args.runs),
        ),
        (
            "owen_values",
            len(values),
            median_us(lambda: naive_owen(n, values), args.runs),
            median_us(lambda: owen_values(n, values), args.runs),
        ),
        (
            "group_G8",
            sum(n_segments),
            median_us(lambda: naive_group(group), args.runs),
            median_us(lambda: ours_group(group), args.runs),
        ),
    ]
    print(f"# G={G} segments={n_segments} tokens={tokens} max_width={MAX_WIDTH} M={MAX_COALITIONS}")
    print(f"{'case':<18}{'n':>6}{'baseline_us':>14}{'ours_us':>12}{'ratio':>8}")
    for case, size, baseline, ours in rows:
        base = f"{baseline:14.1f}" if baseline is not None else f"{'-':>14}"
        ratio = f"{baseline / ours:8.2f}" if baseline is not None else f"{'-':>8}"
        print(f"{case:<18}{size:>6}{base}{ours:12.1f}{ratio}")


if __name__ == "__main__":
    main()
