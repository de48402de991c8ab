"""Encoder backends side by side, in one process on the same GRPO groups (bench/request_path.py's
groups: G=8 responses of ~11 segments, max_width 8, max_coalitions 96, k 1000).

Per group and backend: the **cold** request (engine with an empty cache, options.retriever =
that backend's retriever) against the **PyTorch floor** (one batched torch encode of exactly
the group's distinct partial queries + one batched faiss search), and the encoder's own
throughput on those texts. BM25 is the lexical retriever (no encoder). With --remote-url,
the remote backend is added and compared with the embedding server's own time (the same
texts POSTed straight to /v1/embeddings, in one request and in the backend's batches).

Then the agreement of each backend with PyTorch on demo responses (service.retrieval.agreement):
cosine of query embeddings, |ΔNDCG@k|, and the share of responses with an identical
segment-credit order.

    .venv/bin/python bench/backends.py --groups 4 --repeat 3 --data-dir .cache/test-data \
        [--agreement-queries 20] [--remote-url http://127.0.0.1:7997 --remote-model all-MiniLM-L6-v2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
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

import httpx  # noqa: E402

from bench.request_path import OPTIONS, distinct_queries, request_for  # noqa: E402
from service.cache import MemoryScoreCache  # noqa: E402
from service.engine import AttributionEngine, EncodeBatcher  # noqa: E402
from service.retrieval.agreement import agreement, demo_responses  # noqa: E402
from service.retrieval.registry import RetrieverRegistry, RetrieverSpec  # noqa: E402


def specs(args: argparse.Namespace) -> list[RetrieverSpec]:
    chosen = [
        RetrieverSpec(name="default"),  # torch
        RetrieverSpec(name="onnx", backend="onnx"),
        RetrieverSpec(name="onnx-int8", backend="onnx-int8"),
        RetrieverSpec(name="bm25", kind="bm25"),
    ]
    if args.remote_url:
        chosen.append(
            RetrieverSpec(
                name="remote",
                backend="remote",
                remote_url=args.remote_url,
                remote_model=args.remote_model,
                remote_batch_size=args.remote_batch_size,
            )
        )
    return [spec for spec in chosen if spec.name in args.backends or spec.name == "default"]


def request_on(catalog, query_id: str, retriever: str):
    request = request_for(catalog, query_id)
    request.options.retriever = retriever
    return request


def floor_ms(registry: RetrieverRegistry, texts: list[str], k: int) -> float:
    torch = registry.get("default")
    started = time.perf_counter()
    vectors = torch.encoder.encode(texts, batch_size=32)
    torch.search_vectors(vectors, min(k, len(torch.index.ids)))
    return (time.perf_counter() - started) * 1000.0


def encode_ms(registry: RetrieverRegistry, name: str, texts: list[str]) -> float:
    retriever = registry.get(name)
    started = time.perf_counter()
    if retriever.lexical:
        retriever.index.search_texts(texts, OPTIONS["k"])  # type: ignore[union-attr]
    else:
        retriever.encoder.encode(texts, batch_size=32)
    return (time.perf_counter() - started) * 1000.0


def server_ms(url: str, model: str, texts: list[str], batch_size: int | None) -> float:
    """The embedding server's own time for `texts`: POSTed straight to it, no ospo code."""
    base = url.rstrip("/")
    batches = (
        [texts]
        if batch_size is None
        else [texts[i : i + batch_size] for i in range(0, len(texts), batch_size)]
    )
    with httpx.Client(base_url=base, timeout=120) as client:
        started = time.perf_counter()
        if len(batches) == 1:
            client.post(
                "/v1/embeddings", json={"model": model, "input": batches[0]}
            ).raise_for_status()
        else:
            from concurrent.futures import ThreadPoolExecutor

            def post(batch: list[str]) -> None:
                client.post(
                    "/v1/embeddings", json={"model": model, "input": batch}
                ).raise_for_status()

            with ThreadPoolExecutor(4) as pool:
                list(pool.map(post, batches))
        return (time.perf_counter() - started) * 1000.0


async def cold_ms(registry: RetrieverRegistry, request) -> float:
    engine = AttributionEngine(registry, MemoryScoreCache(100_000), batcher=EncodeBatcher(0.0))
    started = time.perf_counter()
    await engine.attribute(request.model_copy(deep=True))
    return (time.perf_counter() - started) * 1000.0


async def run(args: argparse.Namespace) -> int:
    registry = RetrieverRegistry.load(specs(args), args.data_dir)
    names = [n for n in registry.names() if n != "default"] + ["default"]
    catalog = registry.get("default").catalog
    query_ids = list(catalog.queries)[: args.groups]
    ratios: dict[str, list[float]] = {name: [] for name in names}
    rates: dict[str, list[float]] = {name: [] for name in names}
    remote_rows: list[tuple[float, float, float, float]] = []
    print(f"{'group':<10}{'n':>5}{'floor_ms':>10}  " + "".join(f"{n + '_ms':>14}" for n in names))
    for query_id in query_ids:
        probe = AttributionEngine(registry, MemoryScoreCache(10), batcher=EncodeBatcher(0.0))
        texts = distinct_queries(probe, request_for(catalog, query_id))
        floors: list[float] = []
        floor_ms(registry, texts, OPTIONS["k"])  # warm-up: first calls on new shapes are slow
        colds: dict[str, list[float]] = {name: [] for name in names}
        for _ in range(args.repeat):
            floors.append(floor_ms(registry, texts, OPTIONS["k"]))
            for name in names:
                colds[name].append(await cold_ms(registry, request_on(catalog, query_id, name)))
                rates[name].append(len(texts) / (encode_ms(registry, name, texts) / 1000.0))
        floor = statistics.median(floors)
        cold = {name: statistics.median(values) for name, values in colds.items()}
        for name in names:
            ratios[name].append(cold[name] / floor)
        print(
            f"{query_id:<10}{len(texts):>5}{floor:>10.1f}  "
            + "".join(f"{cold[n]:>8.1f} ({cold[n] / floor:.2f})" for n in names)
        )
        if args.remote_url:
            model = args.remote_model
            own_one = statistics.median(
                server_ms(args.remote_url, model, texts, None) for _ in range(args.repeat)
            )
            own_batched = statistics.median(
                server_ms(args.remote_url, model, texts, args.remote_batch_size)
                for _ in range(args.repeat)
            )
            encode = statistics.median(
                encode_ms(registry, "remote", texts) for _ in range(args.repeat)
            )
            remote_rows.append((own_one, own_batched, encode, cold["remote"]))
    print(
        "\nmedian cold/floor (PyTorch floor of the same distinct partial queries; default = torch):"
    )
    for name in names:
        print(
            f"  {name:<10} cold/floor {statistics.median(ratios[name]):.2f}   "
            f"encoder {statistics.median(rates[name]):.0f} partial queries/s"
        )
    if remote_rows:
        own_one, own_batched, encode, cold_remote = (
            statistics.median(column) for column in zip(*remote_rows, strict=True)
        )
        print(
            f"\nremote: server's own time (one POST) {own_one:.1f} ms, (batches of {args.remote_batch_size}, 4 in flight) {own_batched:.1f} ms; "
            f"ospo remote encode {encode:.1f} ms = {encode / own_one:.2f}x; cold group {cold_remote:.1f} ms = {cold_remote / own_one:.2f}x the server's own time"
        )
    if args.agreement_queries:
        pairs = demo_responses(catalog, queries=args.agreement_queries)
        print(f"\nagreement with torch ({len(pairs)} demo responses):")
        for name in names:
            if name == "default":
                continue
            for k in (1000, 10):
                report = agreement(registry.get("default"), registry.get(name), pairs, k=k)
                print(json.dumps({"retriever": name, **report.to_dict()}))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--groups", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=Path(".cache/test-data"))
    parser.add_argument("--backends", nargs="+", default=["onnx", "onnx-int8", "bm25", "remote"])
    parser.add_argument("--agreement-queries", type=int, default=0)
    parser.add_argument("--remote-url", default=None)
    parser.add_argument("--remote-model", default="all-MiniLM-L6-v2")
    parser.add_argument("--remote-batch-size", type=int, default=32)
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
