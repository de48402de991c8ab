"""The `ospo` console script: serve | index build | attribute.

Each subcommand is a module of this package exposing `add_parser(subparsers)`; its parser
sets `handler=callable(args) -> int`. Heavy imports happen inside the handlers, so
`ospo --help` stays fast. Research commands (the CPU trainer, the study) live in
`experiments/` and are not part of the shipped CLI.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from service import __version__
from service.cli import attribute, index, serve

SUBCOMMANDS = (serve, index, attribute)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ospo", description="OSPO coalition rewards and token advantages as a service"
    )
    parser.add_argument("--version", action="version", version=f"ospo {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in SUBCOMMANDS:
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


__all__ = ["SUBCOMMANDS", "build_parser", "main"]
