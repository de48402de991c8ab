"""Benchmark of the request path on the demo catalog (real packaged MiniLM, flat index).

Per GRPO group (G=8 responses of ~10 phrase segments, max_width 8, max_coalitions 96, k 1000):
  cold   POST /attribute's engine with the cache on but empty (a fresh in-process cache)
  warm   the same group again (served from the cache)
  naive  one encode + one search per coalition, no dedupe, no cache (the authors' cost shape,
         bench/naive.py)
  floor  one batched encode of exactly the group's distinct partial queries + one batched
         search, timed in the same process
and prints `case n baseline_ms ours_ms ratio` rows: cold/floor (target <= 1.3), naive/floor
(expected ~4-7), cold/warm (target >= 50).

Command (builds the demo index under OSPO_DATA_DIR once, ~1-3 min on 2 cores):
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false \
        .venv/bin/python bench/request_path.py [--groups 4] [--repeat 3] [--data-dir DIR] [--threads N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

for _name, _value in (
    ("HF_HUB_OFFLINE", "1"),
    ("TRANSFORMERS_OFFLINE", "1"),
    ("TOKENIZERS_PARALLELISM", "false"),
):
    os.environ.setdefault(_name, _value)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.naive import attribute_naive  # noqa: E402
from service.attribution import segment  # noqa: E402
from service.cache import MemoryScoreCache  # noqa: E402
from service.config import Settings  # noqa: E402
from service.engine import AttributionEngine, EncodeBatcher  # noqa: E402
from service.engine.plan import plan_request  # noqa: E402
from service.retrieval.registry import RetrieverRegistry, RetrieverSpec  # noqa: E402
from service.schemas import AttributeRequest  # noqa: E402

G = 8
OPTIONS = {"max_width": 8, "max_coalitions": 96, "k": 1000}
FILLERS = (
    "please",
    "I think",
    "for everyday use",
    "something nice",
    "thanks",
    "good value",
    "if possible",
    "nothing fancy",
    "for a gift",
    "with fast delivery",
)


def group_texts(catalog, query_id: str, size: int = G) -> list[str]:
    """G distinct responses of ~10 segments mixing the target's attributes with filler."""
    attrs = catalog.query_attributes.get(query_id, {})
    noun = attrs.get("category", "item").replace("-", " ").rstrip("s")
    facts = [
        f"{attrs.get('colour', 'black')} {noun}",
        attrs.get("material", "durable"),
        attrs.get("feature", "compact"),
    ]
    if "gender" in attrs:
        facts.append(attrs["gender"])
    texts = []
    for i in range(size):
        parts = []
        for j in range(10):
            source = facts if (i + j) % 3 == 0 else FILLERS
            parts.append(source[(i * 7 + j * 3) % len(source)])
        texts.append("<answer>" + ", ".join(parts) + f", option {i}</answer>")
    return texts


def request_for(catalog, query_id: str) -> AttributeRequest:
    responses = [{"text": t} for t in group_texts(catalog, query_id)]
    return AttributeRequest.model_validate(
        {"groups": [{"target": {"query_id": query_id}, "responses": responses}], "options": OPTIONS}
    )


def distinct_queries(engine: AttributionEngine, request: AttributeRequest) -> list[str]:
    plan = plan_request(request, engine.binder(request.options), engine.limits)
    return list(dict.fromkeys(text for lane in plan.lanes for _, text in lane.items))


def floor_ms(engine: AttributionEngine, texts: list[str], k: int) -> float:
    retriever = engine.retriever("default", "retriever")
    started = time.perf_counter()
    vectors = retriever.encoder.encode(texts, batch_size=engine.encode_batch_size)
    retriever.search_vectors(vectors, min(k, len(retriever.index.ids)))
    return (time.perf_counter() - started) * 1000.0


async def timed(engine: AttributionEngine, request: AttributeRequest, naive: bool = False) -> float:
    started = time.perf_counter()
    if naive:
        await attribute_naive(engine, request.model_copy(deep=True))
    else:
        await engine.attribute(request.model_copy(deep=True))
    return (time.perf_counter() - started) * 1000.0


async def run(args: argparse.Namespace) -> int:
    settings = Settings(data_dir=args.data_dir) if args.data_dir else Settings()
    registry = RetrieverRegistry.load([RetrieverSpec()], settings.data_dir)
    catalog = registry.get("default").catalog
    query_ids = list(catalog.queries)[: args.groups]
    rows: dict[str, list[float]] = {"cold/floor": [], "naive/floor": [], "cold/warm": []}
    print(f"{'case':<14}{'n':>5}{'baseline_ms':>14}{'ours_ms':>12}{'ratio':>9}")
    for query_id in query_ids:
        request = request_for(catalog, query_id)
        probe = AttributionEngine(registry, MemoryScoreCache(100_000), batcher=EncodeBatcher(0.0))
        texts = distinct_queries(probe, request)
        segments = [len(segment(r.text[8:-9])) for r in request.groups[0].responses]
        floors, colds, warms = [], [], []
        for _ in range(args.repeat):
            floors.append(floor_ms(probe, texts, OPTIONS["k"]))
            engine = AttributionEngine(
                registry, MemoryScoreCache(100_000), batcher=EncodeBatcher(0.0)
            )
            colds.append(await timed(engine, request))
            warms.append(await timed(engine, request))
        naive = await timed(probe, request, naive=True)
        floor, cold, warm = (
            statistics.median(floors),
            statistics.median(colds),
            statistics.median(warms),
        )
        n = len(texts)
        for case, baseline, ours in (
            ("cold/floor", floor, cold),
            ("naive/floor", floor, naive),
            ("cold/warm", warm, cold),
        ):
            ratio = ours / baseline
            rows[case].append(ratio)
            print(f"{case:<14}{n:>5}{baseline:>14.1f}{ours:>12.1f}{ratio:>9.2f}")
        print(f"  {query_id}: segments per response {segments}, distinct partial queries {n}")
    print(
        "median ratios: "
        + ", ".join(f"{case} {statistics.median(v):.2f}" for case, v in rows.items())
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--groups", type=int, default=4, help="demo queries (one GRPO group each)")
    parser.add_argument(
        "--repeat", type=int, default=3, help="repetitions of cold/warm/floor (median)"
    )
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="OSPO_DATA_DIR (index built once there)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch/faiss CPU threads (OSPO_CPU_THREADS)"
    )
    args = parser.parse_args()
    if args.threads is not None:
        from service.engine.services import set_cpu_threads

        set_cpu_threads(args.threads)
    return asyncio.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
