"""The `ospo` console script.

Subcommands live in their own modules, imported only when `ospo` runs, so `ospo --help`
stays fast. To add one, put a module exposing `add_parser(subparsers)` in
`SUBCOMMAND_MODULES`; its parser sets `handler=callable(args) -> int` via set_defaults.
A module listed here that does not exist (yet) is skipped.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any

SUBCOMMAND_MODULES: tuple[str, ...] = (
    "service.cli",  # serve, index build (this module)
    "service.viewcli",  # ospo attribute (per-segment credit view)
    "service.train.cli",  # ospo train
)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from service.api import create_app
    from service.api.app import load_registry
    from service.config import load_settings
    from service.logs import configure_logging

    settings = load_settings(host=args.host, port=args.port, config_file=args.config)
    configure_logging(settings.log_level)
    # Load models and indexes before uvicorn starts, so a missing, truncated or mismatched
    # index ends the process with main()'s one clear line instead of a lifespan traceback.
    registry = load_registry(settings)
    uvicorn.run(
        create_app(settings, registry=registry),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=10,
    )
    return 0


def _index_build(args: argparse.Namespace) -> int:
    from pathlib import Path

    from service.config import load_settings
    from service.logs import configure_logging
    from service.retrieval.build import build_index_cli

    settings = load_settings()
    configure_logging(settings.log_level)
    manifest = build_index_cli(
        args.catalog, args.encoder, args.index, Path(args.out).expanduser(), settings.data_dir
    )
    sys.stdout.write(
        f"index {args.out}: {manifest.index_type} over {manifest.catalog} "
        f"({manifest.size} products, encoder {manifest.encoder}, version {manifest.version})\n"
    )
    return 0


def add_parser(subparsers: Any) -> None:
    serve = subparsers.add_parser("serve", help="run the HTTP service (uvicorn)")
    serve.add_argument("--host", default=None, help="bind address (default OSPO_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default OSPO_PORT or 8000)")
    serve.add_argument("--config", default=None, help="retrievers config file (TOML or JSON)")
    serve.set_defaults(handler=_serve)

    index = subparsers.add_parser("index", help="retriever indexes")
    index_commands = index.add_subparsers(dest="index_command", required=True)
    build = index_commands.add_parser("build", help="encode a catalog and write a faiss index")
    build.add_argument("--catalog", required=True, help='catalog bundle directory, or "demo"')
    build.add_argument(
        "--encoder", default="all-MiniLM-L6-v2", help="sentence-transformers name or path"
    )
    build.add_argument(
        "--index", choices=("flat", "hnsw", "ivf"), default="flat", help="index type"
    )
    build.add_argument("--out", required=True, help="output index directory")
    build.set_defaults(handler=_index_build)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ospo", description="OSPO coalition rewards and token advantages as a service"
    )
    from service import __version__

    parser.add_argument("--version", action="version", version=f"ospo {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        try:
            module = sys.modules[__name__] if name == __name__ else importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and name.startswith(exc.name):
                continue  # that subcommand's module is not installed in this checkout
            raise
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return int(handler(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # one clear line, not a traceback, for operator errors
        from service.errors import OspoError

        known = (OspoError, FileNotFoundError, ValueError)
        if isinstance(exc, known):
            sys.stderr.write(f"ospo: error: {exc}\n")
            return 1
        raise


__all__ = ["SUBCOMMAND_MODULES", "add_parser", "build_parser", "main"]
