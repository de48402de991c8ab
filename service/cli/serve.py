"""`ospo serve`: the HTTP service under uvicorn."""

from __future__ import annotations

import argparse
from typing import Any


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from service.api import create_app
    from service.config import load_settings
    from service.engine.services import load_registry
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


def add_parser(subparsers: Any) -> None:
    serve = subparsers.add_parser("serve", help="run the HTTP service (uvicorn)")
    serve.add_argument("--host", default=None, help="bind address (default OSPO_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default OSPO_PORT or 8000)")
    serve.add_argument("--config", default=None, help="retrievers config file (TOML or JSON)")
    serve.set_defaults(handler=run)


__all__ = ["add_parser", "run"]
