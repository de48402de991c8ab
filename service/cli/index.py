"""`ospo index build`: encode a catalog and write a retriever index with its manifest."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def run_build(args: argparse.Namespace) -> int:
    from service.config import load_settings
    from service.logs import configure_logging
    from service.retrieval.build import build_index_cli

    settings = load_settings()
    configure_logging(settings.log_level)
    manifest = build_index_cli(
        args.catalog,
        args.encoder,
        args.index,
        Path(args.out).expanduser(),
        settings.data_dir,
        backend=args.backend,
    )
    sys.stdout.write(
        f"index {args.out}: {manifest.index_type} over {manifest.catalog} "
        f"({manifest.size} products, encoder {manifest.encoder}, version {manifest.version})\n"
    )
    return 0


def add_parser(subparsers: Any) -> None:
    index = subparsers.add_parser("index", help="retriever indexes")
    index_commands = index.add_subparsers(dest="index_command", required=True)
    build = index_commands.add_parser("build", help="encode a catalog and write a faiss index")
    build.add_argument("--catalog", required=True, help='catalog bundle directory, or "demo"')
    build.add_argument(
        "--encoder", default="all-MiniLM-L6-v2", help="sentence-transformers name or path"
    )
    build.add_argument(
        "--index",
        choices=("flat", "hnsw", "ivf", "bm25"),
        default="flat",
        help="index type (bm25: lexical, no encoder)",
    )
    build.add_argument(
        "--backend",
        choices=("torch", "onnx", "onnx-int8"),
        default="torch",
        help="encoder backend the documents (and later the queries) are encoded with",
    )
    build.add_argument("--out", required=True, help="output index directory")
    build.set_defaults(handler=run_build)


__all__ = ["add_parser", "run_build"]
