"""Training-trace replay: what a real training run pays per GRPO group once the cross-step
cache works, against the PyTorch floor of the same groups.

1. record: `ospo serve` behind a recording proxy; `python -m experiments.train` (tiny policy,
   OSPO-PROP) trains --steps steps against the proxy, which appends every /attribute body to
   trace.jsonl in arrival order (one request per step).
2. replay: a fresh `ospo serve` with a fresh private redis-server (REDIS_URL) gets the recorded
   requests in order, one at a time; each is timed.
3. floor: for each replayed request, one batched PyTorch encode of its distinct partial queries
   plus one batched faiss search, in this process (bench/request_path.py's floor).

Reported: the amortised cost per group over steps --from..--to (replay time / floor time, both
summed over those steps), and per-step rows.

    .venv/bin/python bench/trace_replay.py --steps 32 --data-dir .cache/test-data --out /tmp/trace
    .venv/bin/python bench/trace_replay.py --trace /tmp/trace/trace.jsonl   # replay only
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
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

from bench.load import start_server, stop_server  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def recording_proxy(target: str, trace: Path) -> tuple[str, object]:
    """A loopback HTTP proxy to `target` that appends every /attribute body to `trace`."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    client = httpx.AsyncClient(base_url=target, timeout=600)
    lock = threading.Lock()

    async def forward(request: Request) -> Response:
        body = await request.body()
        if request.url.path == "/attribute" and request.method == "POST":
            with lock, open(trace, "ab") as out:
                out.write(body.replace(b"\n", b" ") + b"\n")
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")
        }
        answer = await client.request(
            request.method,
            request.url.path,
            params=request.query_params,
            content=body,
            headers=headers,
        )
        return Response(
            answer.content,
            status_code=answer.status_code,
            media_type=answer.headers.get("content-type"),
        )

    app = Starlette(routes=[Route("/{path:path}", forward, methods=["GET", "POST"])])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server


def record(args: argparse.Namespace) -> Path:
    args.out.mkdir(parents=True, exist_ok=True)
    trace = args.out / "trace.jsonl"
    trace.unlink(missing_ok=True)
    process, url = start_server(args.data_dir, None, args.out / "record-server.log")
    try:
        proxy_url, proxy = recording_proxy(url, trace)
        command = [
            sys.executable,
            "-m",
            "experiments.train",
            "--policy",
            "tiny",
            "--advantage",
            "ospo-prop",
            "--steps",
            str(args.steps),
            "--url",
            proxy_url,
            "--out",
            str(args.out / "run"),
            "--no-progress",
        ]
        started = time.perf_counter()
        subprocess.run(command, check=True, cwd=Path(__file__).resolve().parents[1])
        print(
            f"recorded {sum(1 for _ in open(trace))} /attribute requests in {time.perf_counter() - started:.0f} s"
        )
        proxy.should_exit = True  # type: ignore[attr-defined]
    finally:
        stop_server(process)
    return trace


def private_redis(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not on PATH")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(directory)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    return process, f"redis://127.0.0.1:{port}/0"


def floors_ms(bodies: list[dict], data_dir: Path) -> list[float]:
    from bench.request_path import floor_ms
    from service.cache import MemoryScoreCache
    from service.engine import AttributionEngine, EncodeBatcher
    from service.engine.plan import plan_request
    from service.retrieval.registry import RetrieverRegistry, RetrieverSpec
    from service.schemas import AttributeRequest

    registry = RetrieverRegistry.load([RetrieverSpec()], data_dir)
    engine = AttributionEngine(registry, MemoryScoreCache(10), batcher=EncodeBatcher(0.0))
    floors = []
    for body in bodies:
        request = AttributeRequest.model_validate(body)
        plan = plan_request(request, engine.binder(request.options), engine.limits)
        texts = list(dict.fromkeys(text for lane in plan.lanes for _, text in lane.items))
        floors.append(floor_ms(engine, texts, request.options.k) if texts else 0.0)
    return floors


def replay(args: argparse.Namespace, trace: Path) -> int:
    bodies = [json.loads(line) for line in trace.read_text().splitlines() if line.strip()]
    scratch = Path(tempfile.mkdtemp(prefix="ospo-replay-"))
    redis, redis_url = private_redis(scratch)
    process, url = start_server(args.data_dir, redis_url, scratch / "replay-server.log")
    times: list[float] = []
    try:
        with httpx.Client(base_url=url, timeout=600) as client:
            for body in bodies:
                started = time.perf_counter()
                client.post("/attribute", json=body).raise_for_status()
                times.append((time.perf_counter() - started) * 1000.0)
    finally:
        stop_server(process)
        redis.terminate()
        redis.wait()
        shutil.rmtree(scratch, ignore_errors=True)
    # The trainer's held-out evaluations (group ids "eval/...") are replayed too (they fill
    # the cache as in the real run) but are not training steps.
    steps = [
        i
        for i, body in enumerate(bodies)
        if not str(body["groups"][0].get("id", "")).startswith("eval/")
    ]
    floors = floors_ms([bodies[i] for i in steps], args.data_dir)
    print(f"{'step':>4}{'groups':>8}{'replay_ms':>11}{'floor_ms':>10}{'ratio':>8}")
    rows = []
    for step, (i, floor) in enumerate(zip(steps, floors, strict=True), start=1):
        groups, spent = len(bodies[i]["groups"]), times[i]
        rows.append((groups, spent, floor))
        print(
            f"{step:>4}{groups:>8}{spent:>11.1f}{floor:>10.1f}{spent / floor if floor else 0:>8.2f}"
        )
    window = rows[args.first - 1 : args.last]
    replayed, floor_total = sum(r[1] for r in window), sum(r[2] for r in window)
    count = sum(r[0] for r in window)
    evals = sum(times[i] for i in range(len(bodies)) if i not in steps)
    print(
        f"training steps {args.first}-{args.first + len(window) - 1}: {count} groups, amortised "
        f"{replayed / count:.1f} ms per group vs floor {floor_total / count:.1f} ms: "
        f"ratio {replayed / floor_total:.2f} (held-out evaluations replayed: {evals:.0f} ms)"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--data-dir", type=Path, default=Path(".cache/test-data"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/ospo-trace"))
    parser.add_argument(
        "--trace", type=Path, default=None, help="replay this trace (skip recording)"
    )
    parser.add_argument("--first", type=int, default=10)
    parser.add_argument("--last", type=int, default=30)
    args = parser.parse_args()
    trace = args.trace or record(args)
    return replay(args, trace)


if __name__ == "__main__":
    raise SystemExit(main())
