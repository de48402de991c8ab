"""The service a study invocation trains against, and the recorder that keeps what the
service did for each training step.

One in-process service per invocation (``serve_in_background``, in-process LRU score
cache, no Redis), reached only through the public client. It hosts the training retriever
(``default``: all-MiniLM-L6-v2 over the demo catalog) and, when asked, the retrievers the
cross-retriever table evaluates with.
"""

from __future__ import annotations

import math
import re
import statistics
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from experiments.study.store import StepRecord
from trainer_client import AttributeResult, Group, Options, RewardResult


@dataclass(frozen=True)
class RetrieverEntry:
    name: str
    encoder: str
    extra: str = ""
    """More TOML lines of the retriever's entry (e.g. ``kind = "bm25"``)."""


TRAINING_RETRIEVER = RetrieverEntry("default", "all-MiniLM-L6-v2")


@contextmanager
def local_service(
    data_dir: Path, extra_retrievers: Sequence[RetrieverEntry] = ()
) -> Iterator[tuple[Any, str]]:
    """The client and base URL of one in-process service over the demo catalog."""
    from service.api.local import serve_in_background
    from service.config import Settings
    from trainer_client import AttributionClient

    data_dir.mkdir(parents=True, exist_ok=True)
    config_file = data_dir / "study-retrievers.toml"
    config_file.write_text(
        "".join(
            f'[[retrievers]]\nname = "{r.name}"\nencoder = "{r.encoder}"\ncatalog = "demo"\n'
            f'index_type = "flat"\n{r.extra}\n'
            for r in (TRAINING_RETRIEVER, *extra_retrievers)
        ),
        encoding="utf-8",
    )
    # redis_url None: the in-process LRU, nothing shared with other users of a Redis.
    settings = Settings(config_file=config_file, data_dir=data_dir, redis_url=None)
    with (
        # A cross retriever's index is built at start-up (mpnet over the demo catalog: ~15 min
        # of one core), far past the server's default start-up deadline.
        serve_in_background(settings, timeout_s=3 * 3600.0) as server,
        AttributionClient(server.url, max_retries=0, timeout=600.0) as client,
    ):
        yield client, server.url


_COUNTER = re.compile(
    r"^(ospo_cache_hits_total|ospo_cache_misses_total|ospo_encoded_texts_total)\s+(\S+)$", re.M
)


def read_counters(url: str) -> dict[str, float]:
    """The score-cache counters of the service's /metrics."""
    text = httpx.get(f"{url}/metrics", timeout=30.0).text
    return {name: float(value) for name, value in _COUNTER.findall(text)}


class RecordingService:
    """The client, plus a :class:`StepRecord` per training step. Held-out scoring (group ids
    ``eval/...``) is passed through unrecorded."""

    def __init__(self, client: Any, url: str) -> None:
        self._client = client
        self._url = url
        self.records: list[StepRecord] = []

    def attribute(self, groups: Sequence[Group], options: Options | None = None) -> AttributeResult:
        evaluating = bool(groups) and groups[0].id.startswith("eval/")
        started = time.perf_counter()
        result: AttributeResult = self._client.attribute(groups, options)
        if evaluating:
            return result
        segments = [s for r in result.responses for s in r.segments]
        unmeasured = sum(1 for s in segments if s.value is None)
        self.records.append(
            StepRecord(
                responses=len(result.responses),
                coalitions=result.stats.coalitions,
                unique_queries=result.stats.unique_queries,
                cache_hits=result.stats.cache_hits,
                encoded=result.stats.encoded,
                service_ms=(time.perf_counter() - started) * 1000.0,
                unmeasured_share=unmeasured / len(segments) if segments else 0.0,
                within_group_reward_var=_within_group_var(
                    [[r.reward for r in g.responses] for g in result.groups]
                ),
            )
        )
        return result

    def reward(
        self, queries: Sequence[str], prompts: Sequence[str], labels: Sequence[str]
    ) -> RewardResult:
        """The GRPO arm's step: /reward answers no stats, so the cache counters of /metrics
        are read around the call (training runs one step at a time per service)."""
        before = read_counters(self._url)
        started = time.perf_counter()
        result: RewardResult = self._client.reward(queries, prompts, labels)
        service_ms = (time.perf_counter() - started) * 1000.0
        after = read_counters(self._url)

        def delta(name: str) -> int:
            return int(after.get(name, 0.0) - before.get(name, 0.0))

        hits = delta("ospo_cache_hits_total")
        rewards = list(result.rewards)
        size = len(rewards) // len(set(labels)) if labels else 1
        groups = [rewards[i : i + size] for i in range(0, len(rewards), size)]
        self.records.append(
            StepRecord(
                responses=len(rewards),
                coalitions=len(rewards),
                unique_queries=hits + delta("ospo_cache_misses_total"),
                cache_hits=hits,
                encoded=delta("ospo_encoded_texts_total"),
                service_ms=service_ms,
                unmeasured_share=math.nan,
                within_group_reward_var=_within_group_var(groups),
            )
        )
        return result


def _within_group_var(groups: Sequence[Sequence[float]]) -> float:
    variances = [statistics.pvariance(g) for g in groups if len(g) > 1]
    return statistics.fmean(variances) if variances else 0.0


__all__ = [
    "TRAINING_RETRIEVER",
    "RecordingService",
    "RetrieverEntry",
    "local_service",
    "read_counters",
]
