"""`python -m experiments.train`: GRPO/OSPO training of a small policy on CPU against the
service.

    python -m experiments.train --policy tiny --advantage ospo-prop --steps 40 --out runs/prop

Talks to the service over HTTP (``--url``); without ``--url`` it serves the app in this
process for the duration of the run (``service.api.local.serve_in_background``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_LR = {"tiny": 3e-3, "smollm2": 1e-4}
DEFAULT_SEGMENTER = {"tiny": "word", "smollm2": "phrase"}
DEFAULT_EVAL_QUERIES = {"tiny": None, "smollm2": 4}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "train",
        help="train a small policy with GRPO/OSPO advantages from the service (CPU)",
        description=(
            "Sample G responses per request from a policy, get rewards and token advantages "
            "from POST /attribute, update with the PPO-clipped token-level loss, and write "
            "metrics.csv (one row per step) and summary.json to --out."
        ),
    )
    parser.add_argument("--policy", choices=("tiny", "smollm2"), default="tiny")
    parser.add_argument(
        "--advantage", choices=("grpo", "ospo-prop", "ospo-rank"), default="ospo-prop"
    )
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--group-size", type=int, default=8, help="responses per request (G)")
    parser.add_argument("--prompts-per-step", type=int, default=4, help="requests per step")
    parser.add_argument("--max-width", type=int, default=8, help="widest coalition")
    parser.add_argument("--max-coalitions", type=int, default=32, help="coalitions per response")
    parser.add_argument("--retriever", default="default")
    parser.add_argument(
        "--segmenter",
        choices=("phrase", "word", "sentence"),
        default=None,
        help="segments of the query (default: word for tiny, whose tokens are words; phrase for smollm2)",
    )
    parser.add_argument("--url", default=None, help="service URL (default: start one in-process)")
    parser.add_argument(
        "--api-key", default=os.environ.get("OSPO_API_KEY"), help="default OSPO_API_KEY"
    )
    parser.add_argument("--out", type=Path, default=Path("ospo-train"), help="output directory")
    parser.add_argument(
        "--lr", type=float, default=None, help="default 3e-3 (tiny), 1e-4 (smollm2)"
    )
    parser.add_argument("--epochs", type=int, default=2, help="gradient steps per batch")
    parser.add_argument("--eval-every", type=int, default=10, help="held-out evaluation interval")
    parser.add_argument(
        "--eval-queries",
        type=int,
        default=None,
        help="held-out requests to score (default all; 4 for smollm2)",
    )
    parser.add_argument("--catalog", default="demo", help='"demo" or a catalog bundle directory')
    parser.add_argument("--max-new-tokens", type=int, default=24, help="smollm2 response length")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    import torch

    from experiments.train.loop import TrainConfig, train
    from service.logs import configure_logging

    configure_logging(os.environ.get("OSPO_LOG_LEVEL", "INFO"))
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request drowns the bar
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    config = TrainConfig(
        advantage=args.advantage,
        steps=args.steps,
        seed=args.seed,
        group_size=args.group_size,
        prompts_per_step=args.prompts_per_step,
        max_width=args.max_width,
        max_coalitions=args.max_coalitions,
        retriever=args.retriever,
        segmenter=args.segmenter or DEFAULT_SEGMENTER[args.policy],
        lr=args.lr if args.lr is not None else DEFAULT_LR[args.policy],
        epochs=args.epochs,
        eval_every=args.eval_every,
        eval_queries=args.eval_queries
        if args.eval_queries is not None
        else DEFAULT_EVAL_QUERIES[args.policy],
    )
    catalog = _load_catalog(args.catalog)
    policy = _build_policy(args, catalog)
    with _service(args.url) as url:
        from trainer_client import AttributionClient

        with AttributionClient(url, api_key=args.api_key) as client:
            result = train(policy, client, catalog, config, args.out, progress=not args.no_progress)
    if hasattr(policy, "save"):
        policy.save(args.out)
    sys.stdout.write(
        f"held-out NDCG {result.initial_ndcg:.4f} -> {result.final_ndcg:.4f} "
        f"({args.policy}, {args.advantage}, {args.steps} steps); metrics in {args.out / 'metrics.csv'}\n"
    )
    return 0


def _load_catalog(source: str) -> Any:
    if source == "demo":
        from service.retrieval.demo import build_demo_catalog

        return build_demo_catalog()
    from service.retrieval.catalog import load_catalog

    return load_catalog(Path(source).expanduser())


def _build_policy(args: argparse.Namespace, catalog: Any) -> Any:
    if args.policy == "tiny":
        from experiments.train.policy_tiny import TinyPolicy

        return TinyPolicy.from_catalog(catalog)
    from experiments.train.policy_smollm2 import SmolLM2Config, SmolLM2Policy

    return SmolLM2Policy(SmolLM2Config(max_new_tokens=args.max_new_tokens))


@contextmanager
def _service(url: str | None) -> Iterator[str]:
    if url is not None:
        yield url
        return
    from service.api.local import serve_in_background
    from service.config import load_settings

    with serve_in_background(load_settings()) as server:
        yield server.url


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m experiments.train")
    subparsers = parser.add_subparsers(dest="command")
    train_parser = add_parser(subparsers)
    train_parser.prog = parser.prog
    return train_parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except KeyboardInterrupt:
        return 130


__all__ = ["add_parser", "build_parser", "main", "run"]
