"""Logging setup for the `ospo` processes: one plain line per record on stderr."""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str | int = "INFO") -> None:
    """Configure the root logger once (later calls only change the level)."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format=FORMAT)
    root.setLevel(level if isinstance(level, int) else level.upper())


__all__ = ["FORMAT", "configure_logging"]
