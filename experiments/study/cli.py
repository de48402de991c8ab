"""`python -m experiments.study TABLE ... | all`: one command per table.

    .venv/bin/python -m experiments.study main                 # GRPO vs OSPO-PROP vs OSPO-RANK
    .venv/bin/python -m experiments.study budget estimator credit negative width sampler
    .venv/bin/python -m experiments.study cross-retriever cost smollm2
    .venv/bin/python -m experiments.study all                  # everything, in priority order
    .venv/bin/python -m experiments.study report               # rebuild every table from the runs

A training table trains the runs missing from ``--runs`` (default docs/study/runs/, the
committed store), then writes its outputs under ``--out`` (default docs/study/):
``<table>.md`` (the table and its paired comparisons), ``<table>.csv``, ``<table>.png``
(mean held-out curve per arm with a band) and ``<table>_forest.png`` (each paired difference
with its 95 % bootstrap interval). ``--no-train`` only rebuilds from stored runs (tables with
missing runs say how many). ``--shard i/k`` trains every k-th missing run, so k processes can
share a table; ``--smoke`` is 1 seed of 2 small steps (the test suite's path).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

for _name, _value in (
    ("HF_HUB_OFFLINE", "1"),
    ("TRANSFORMERS_OFFLINE", "1"),
    ("TOKENIZERS_PARALLELISM", "false"),
):
    os.environ.setdefault(_name, _value)

REPO = Path(__file__).resolve().parents[2]
logger = logging.getLogger("experiments.study")


def build_parser() -> argparse.ArgumentParser:
    from experiments.study.arms import ALL_TABLES

    parser = argparse.ArgumentParser(
        prog="python -m experiments.study",
        description="The study of the OSPO paper's claims (docs/STUDY.md).",
    )
    parser.add_argument(
        "tables", nargs="+", choices=(*ALL_TABLES, "all", "report"), metavar="table"
    )
    parser.add_argument("--seeds", type=int, default=None, help="main-table seeds (default 8)")
    parser.add_argument(
        "--ablation-seeds", type=int, default=None, help="seeds per ablation (default 5)"
    )
    parser.add_argument("--steps", type=int, default=None, help="training steps (default 60)")
    parser.add_argument("--smoke", action="store_true", help="1 seed of 2 small steps")
    parser.add_argument("--no-train", action="store_true", help="only rebuild from stored runs")
    parser.add_argument("--shard", default="0/1", help="i/k: train every k-th missing run")
    parser.add_argument(
        "--arms",
        default=None,
        help="comma-separated arm labels: train only these (others are read)",
    )
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "study")
    parser.add_argument("--runs", type=Path, default=None, help="default <out>/runs")
    parser.add_argument("--data-dir", type=Path, default=REPO / ".cache" / "study-data")
    parser.add_argument(
        "--cross-encoder",
        default="all-mpnet-base-v2",
        help="the cross retriever's encoder (the smoke test uses hash:256)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    import torch

    from experiments.study.arms import ALL_TABLES, SMOKE, Scale
    from experiments.study.tables import run_tables

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("httpx", "service", "faiss.loader", "sentence_transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)
    if args.smoke:
        scale = SMOKE
    else:
        scale = Scale()
        changes = {
            "seeds": args.seeds,
            "ablation_seeds": args.ablation_seeds,
            "steps": args.steps,
        }
        from dataclasses import replace

        scale = replace(scale, **{k: v for k, v in changes.items() if v is not None})
    if "all" in args.tables:
        tables = list(ALL_TABLES)
    elif "report" in args.tables:
        # Everything that is made of stored runs; the cost table measures, so it is not here.
        tables = [t for t in ALL_TABLES if t != "cost"]
        args.no_train = True
    else:
        tables = list(dict.fromkeys(args.tables))
    index, _, count = args.shard.partition("/")
    shard = (int(index), int(count or 1))
    started = time.perf_counter()
    run_tables(
        tables,
        scale,
        out=args.out,
        runs_dir=args.runs or args.out / "runs",
        data_dir=args.data_dir,
        shard=shard,
        train_missing=not args.no_train,
        cross_encoder=args.cross_encoder,
        only_arms=args.arms.split(",") if args.arms else None,
    )
    sys.stdout.write(f"{' '.join(tables)}: {time.perf_counter() - started:.0f} s wall\n")
    return 0


__all__ = ["build_parser", "main"]
