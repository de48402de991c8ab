"""StageTimer: one record of where a request's time went, for stats.timings_ms, the stage
histograms and the request's log line."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

STAGES = ("segment", "cache", "encode", "search", "score", "attribute")


class StageTimer:
    """Accumulates wall time per stage; a stage may be entered several times."""

    def __init__(self) -> None:
        self._started = time.perf_counter()
        self.seconds: dict[str, float] = dict.fromkeys(STAGES, 0.0)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        began = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - began)

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def total_s(self) -> float:
        return time.perf_counter() - self._started

    def as_ms(self) -> dict[str, float]:
        timings = {name: round(value * 1000.0, 3) for name, value in self.seconds.items()}
        timings["total"] = round(self.total_s() * 1000.0, 3)
        return timings


__all__ = ["STAGES", "StageTimer"]
