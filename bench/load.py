"""Load benchmark of a running `ospo serve`: N concurrent clients send realistic /attribute
groups for a bounded time; reports throughput, p50/p95/p99 latency, errors (503s apart),
the cache hit rate and the server's peak RSS. A second mode checks that memory stays bounded
over many small requests (RSS before/after, metric label cardinality).

Responses are built like rollouts of a search policy: for a demo catalog query, a random subset
of its attribute words plus filler words, shuffled, in <answer> tags. A limited pool of queries
and words makes partial queries recur across requests, so the cache hit rate is realistic
(neither 0 nor 100%).

Without --url a server is started in a subprocess (`ospo serve` on a free loopback port, with
OSPO_DATA_DIR=--data-dir so an existing demo index is reused) and stopped at the end.

Run (as recorded in docs/BENCHMARKS.md):

    cd /work/main && HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false \\
        .venv/bin/python bench/load.py --clients 16 --duration 30
    # memory bound over 10,000 small requests:
    cd /work/main && HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false \\
        .venv/bin/python bench/load.py --memory --requests 10000 --clients 16

One script past the usual module size: a benchmark is read top to bottom in one sitting.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

# `python bench/load.py` puts bench/ first on sys.path, where bench/service.py would shadow the
# `service` package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FILLER = ("please", "maybe", "good", "nice", "cheap", "new", "best", "for me", "today", "quality")
OPTIONS = {"k": 100, "max_width": 4, "max_coalitions": 24}


# ----------------------------------------------------------------------------- server process


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def ospo_command() -> list[str]:
    script = Path(sys.executable).with_name("ospo")
    return [str(script)] if script.exists() else [sys.executable, "-m", "service"]


def start_server(
    data_dir: Path, redis_url: str | None, log_path: Path
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OSPO_") and k != "REDIS_URL"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env["OSPO_DATA_DIR"] = str(data_dir)
    env["OSPO_LOG_LEVEL"] = "WARNING"  # per-request INFO lines would cost the server time
    if redis_url:
        env["REDIS_URL"] = redis_url
    log = open(log_path, "wb")  # noqa: SIM115 - the child owns it for its whole life
    process = subprocess.Popen(
        [*ospo_command(), "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"ospo serve exited with {process.returncode}; see {log_path}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    process.kill()
    raise SystemExit(f"ospo serve was not ready in 900 s; see {log_path}")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def rss_bytes(pid: int) -> int | None:
    try:
        import psutil

        return int(psutil.Process(pid).memory_info().rss)
    except ImportError:
        return _proc_status_kib(pid, "VmRSS")
    except Exception:
        return None


def peak_rss_bytes(pid: int) -> int | None:
    """The process's high-water mark (VmHWM, Linux), else None."""
    return _proc_status_kib(pid, "VmHWM")


def _proc_status_kib(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


# ----------------------------------------------------------------------------- requests


def load_queries(data_dir: Path) -> list[dict[str, Any]]:
    path = data_dir / "catalogs" / "demo" / "queries.jsonl"
    if path.is_file():
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    from service.retrieval.demo import build_demo_catalog

    catalog = build_demo_catalog()
    return [
        {"id": qid, "text": text, "attributes": catalog.query_attributes[qid]}
        for qid, text in catalog.queries.items()
    ]


def rollout(query: dict[str, Any], rng: random.Random) -> str:
    words = [str(v).replace("-", " ") for v in query.get("attributes", {}).values()] or [
        "something"
    ]
    picked = rng.sample(words, k=rng.randint(1, len(words)))
    picked += rng.sample(FILLER, k=rng.randint(0, 2))
    rng.shuffle(picked)
    return f"<think>the user wants {words[0]}</think><answer>{' '.join(picked)}</answer>"


def attribute_body(
    queries: list[dict[str, Any]], rng: random.Random, groups: int, responses: int
) -> dict[str, Any]:
    return {
        "groups": [
            {
                "id": f"g{n}",
                "target": {"query_id": query["id"]},
                "responses": [{"text": rollout(query, rng)} for _ in range(responses)],
            }
            for n, query in enumerate(rng.sample(queries, k=groups))
        ],
        "options": OPTIONS,
    }


def small_body(queries: list[dict[str, Any]], rng: random.Random, serial: int) -> dict[str, Any]:
    """One response, a couple of words plus a serial number: every request adds new cache
    entries, the worst case for memory growth."""
    query = rng.choice(queries)
    words = [str(v) for v in query.get("attributes", {}).values()][:2]
    text = f"<answer>{' '.join(words)} {serial}</answer>"
    return {
        "groups": [{"id": "g", "target": {"query_id": query["id"]}, "responses": [{"text": text}]}],
        "options": {"k": 10, "max_width": 2, "max_coalitions": 4},
    }


# ----------------------------------------------------------------------------- measuring


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    exceptions: Counter[str] = field(default_factory=Counter)
    unique_queries: int = 0
    cache_hits: int = 0
    responses: int = 0


async def send(client: httpx.AsyncClient, body: dict[str, Any], tally: Tally) -> None:
    started = time.perf_counter()
    try:
        response = await client.post("/attribute", json=body)
    except httpx.HTTPError as exc:
        tally.exceptions[type(exc).__name__] += 1
        return
    tally.statuses[response.status_code] += 1
    if response.status_code == 200:
        tally.latencies.append(time.perf_counter() - started)
        stats = response.json()["stats"]
        tally.unique_queries += stats["unique_queries"]
        tally.cache_hits += stats["cache_hits"]
        tally.responses += sum(len(g["responses"]) for g in body["groups"])


async def sample_rss(pid: int | None, peak: list[int], stop: asyncio.Event) -> None:
    while pid is not None and not stop.is_set():
        value = rss_bytes(pid)
        if value:
            peak[0] = max(peak[0], value)
        try:
            await asyncio.wait_for(stop.wait(), timeout=0.25)
        except asyncio.TimeoutError:
            pass


def metric_samples(text: str) -> dict[str, float]:
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def metric_sum(samples: dict[str, float], family: str) -> float:
    return sum(v for k, v in samples.items() if k == family or k.startswith(family + "{"))


def cardinality(samples: dict[str, float]) -> dict[str, int]:
    families: Counter[str] = Counter(name.partition("{")[0] for name in samples)
    return dict(sorted(families.items()))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)  # nearest-rank percentile
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


async def fetch_metrics(client: httpx.AsyncClient) -> dict[str, float]:
    response = await client.get("/metrics")
    return metric_samples(response.text) if response.status_code == 200 else {}


async def run_load(
    args: argparse.Namespace, url: str, pid: int | None, queries: list[dict[str, Any]]
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    async with httpx.AsyncClient(
        base_url=url, headers=headers, timeout=300.0, limits=limits
    ) as client:
        before = await fetch_metrics(client)
        tally = Tally()
        peak = [0]
        stop = asyncio.Event()
        sampler = asyncio.create_task(sample_rss(pid, peak, stop))
        deadline = time.monotonic() + args.duration

        async def one_client(number: int) -> None:
            rng = random.Random(args.seed * 1000 + number)
            pool = random.Random(args.seed).sample(queries, k=min(args.queries, len(queries)))
            while time.monotonic() < deadline:
                await send(client, attribute_body(pool, rng, args.groups, args.responses), tally)

        started = time.monotonic()
        await asyncio.gather(*(one_client(n) for n in range(args.clients)))
        elapsed = time.monotonic() - started
        stop.set()
        await sampler
        after = await fetch_metrics(client)
    hits = metric_sum(after, "ospo_cache_hits_total") - metric_sum(before, "ospo_cache_hits_total")
    misses = metric_sum(after, "ospo_cache_misses_total") - metric_sum(
        before, "ospo_cache_misses_total"
    )
    ok = tally.statuses.get(200, 0)
    return {
        "mode": "load",
        "clients": args.clients,
        "duration_s": round(elapsed, 1),
        "request_shape": f"{args.groups} group(s) x {args.responses} responses, options {OPTIONS}",
        "requests_ok": ok,
        "throughput_rps": round(ok / elapsed, 2),
        "responses_per_s": round(tally.responses / elapsed, 1),
        "latency_ms": {
            "p50": round(percentile(tally.latencies, 50) * 1000, 1),
            "p95": round(percentile(tally.latencies, 95) * 1000, 1),
            "p99": round(percentile(tally.latencies, 99) * 1000, 1),
            "mean": round(statistics.fmean(tally.latencies) * 1000, 1) if tally.latencies else None,
        },
        "errors": sum(n for s, n in tally.statuses.items() if s != 200 and s != 503)
        + sum(tally.exceptions.values()),
        "status_503": tally.statuses.get(503, 0),
        "statuses": dict(tally.statuses),
        "exceptions": dict(tally.exceptions),
        "cache_hit_rate_responses": round(tally.cache_hits / tally.unique_queries, 3)
        if tally.unique_queries
        else None,
        "cache_hit_rate_metrics": round(hits / (hits + misses), 3) if hits + misses else None,
        "server_rss_peak_during_run_mib": round(peak[0] / 2**20, 1) if peak[0] else None,
        "server_rss_high_water_mib": _mib(peak_rss_bytes(pid) if pid else None),
    }


async def run_memory(
    args: argparse.Namespace, url: str, pid: int | None, queries: list[dict[str, Any]]
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    rng = random.Random(args.seed)
    warmup = min(500, args.requests // 10)
    async with httpx.AsyncClient(
        base_url=url, headers=headers, timeout=300.0, limits=limits
    ) as client:
        tally = Tally()
        serial = iter(range(10**9))

        async def worker(count: int) -> None:
            for _ in range(count):
                await send(client, small_body(queries, rng, next(serial)), tally)

        async def run(total: int) -> None:
            share, extra = divmod(total, args.clients)
            await asyncio.gather(
                *(worker(share + (1 if n < extra else 0)) for n in range(args.clients))
            )

        await run(warmup)
        rss_warm = rss_bytes(pid) if pid else None
        metrics_warm = await fetch_metrics(client)
        started = time.monotonic()
        checkpoints = []
        remaining = args.requests
        step = max(1, args.requests // 4)
        while remaining > 0:
            batch = min(step, remaining)
            await run(batch)
            remaining -= batch
            checkpoints.append(_mib(rss_bytes(pid) if pid else None))
        elapsed = time.monotonic() - started
        metrics_end = await fetch_metrics(client)
    rss_end = rss_bytes(pid) if pid else None
    return {
        "mode": "memory",
        "requests": args.requests,
        "warmup_requests": warmup,
        "clients": args.clients,
        "seconds": round(elapsed, 1),
        "ok": tally.statuses.get(200, 0),
        "statuses": dict(tally.statuses),
        "exceptions": dict(tally.exceptions),
        "unique_queries_sent": tally.unique_queries,
        "rss_after_warmup_mib": _mib(rss_warm),
        "rss_checkpoints_mib": checkpoints,
        "rss_end_mib": _mib(rss_end),
        "rss_growth_mib": round((rss_end - rss_warm) / 2**20, 1) if rss_end and rss_warm else None,
        "rss_growth_per_1k_requests_kib": round(
            (rss_end - rss_warm) / 1024 / (args.requests / 1000), 1
        )
        if rss_end and rss_warm
        else None,
        "metric_series_after_warmup": sum(cardinality(metrics_warm).values()),
        "metric_series_end": sum(cardinality(metrics_end).values()),
        "metric_series_by_family_end": cardinality(metrics_end),
        "cache_items": "not exposed by the service (no cache size metric)",
        "server_rss_high_water_mib": _mib(peak_rss_bytes(pid) if pid else None),
    }


def _mib(value: int | None) -> float | None:
    return round(value / 2**20, 1) if value else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running service (default: start one)")
    parser.add_argument("--pid", type=int, help="with --url: the server's pid, for RSS")
    parser.add_argument("--api-key", default=os.environ.get("OSPO_API_KEY"))
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("OSPO_DATA_DIR", "~/.cache/ospo")).expanduser(),
    )
    parser.add_argument(
        "--redis-url",
        default=None,
        help="REDIS_URL for the started server (default: in-process cache)",
    )
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load")
    parser.add_argument("--groups", type=int, default=1, help="groups per request")
    parser.add_argument("--responses", type=int, default=8, help="responses per group (GRPO G)")
    parser.add_argument(
        "--queries", type=int, default=64, help="distinct catalog queries drawn from"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--memory", action="store_true", help="memory-bound mode instead of load")
    parser.add_argument(
        "--requests", type=int, default=10000, help="--memory: small requests to send"
    )
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)

    process = None
    pid = args.pid
    url = args.url
    if url is None:
        args.data_dir.mkdir(parents=True, exist_ok=True)
        log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"ospo-bench-load-{os.getpid()}.log"
        print(f"starting ospo serve (data dir {args.data_dir}, log {log_path}) ...", flush=True)
        started = time.monotonic()
        process, url = start_server(args.data_dir, args.redis_url, log_path)
        pid = process.pid
        print(f"ready at {url} in {time.monotonic() - started:.1f} s (pid {pid})", flush=True)
    try:
        queries = load_queries(args.data_dir)
        runner = run_memory if args.memory else run_load
        report = asyncio.run(runner(args, url, pid, queries))
    finally:
        if process is not None:
            stop_server(process)
    report["cpu_count"] = os.cpu_count()
    report["cache_backend"] = "redis" if args.redis_url else ("external" if args.url else "memory")
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
