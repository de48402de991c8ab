"""A verl reward function on the service's ``POST /reward``: the retrieval NDCG of each
response's search query against its ``ground_truth`` label (the label grammar of
docs/TRAINERS.md), so verl's scalar rewards and OSPO's coalition values are one game::

    reward.custom_reward_function.path=pkg://trainer_client.verl.reward
    reward.custom_reward_function.name=compute_score
    +reward.custom_reward_function.reward_kwargs.url=http://OSPO_HOST:8000

Give it the game's parameters that ``algorithm.ospo`` sets (``+reward.custom_reward_function.
reward_kwargs.retriever=...``, ``k``, ``depth``, ``query_tag``), so ``/reward`` scores the same
game as ``/attribute``. verl calls this in its reward workers, one response at a time;
clients are kept per URL and process.
"""

from __future__ import annotations

import atexit
import json
import threading
from typing import Any

from .._client import AttributionClient

__all__ = ["compute_score"]

_clients: dict[str, AttributionClient] = {}
_lock = threading.Lock()


@atexit.register
def _close_clients() -> None:
    with _lock:
        for client in _clients.values():
            client.close()
        _clients.clear()


def compute_score(
    data_source: Any,
    solution_str: str,
    ground_truth: Any,
    extra_info: Any = None,
    *,
    url: str,
    retriever: str | None = None,
    k: int | None = None,
    depth: int | None = None,
    query_tag: str | None = None,
    **kwargs: Any,
) -> float:
    """verl's ``compute_score`` contract; ``url`` (and the game's parameters) come from
    ``reward_kwargs``."""
    with _lock:
        client = _clients.get(url)
        if client is None:
            client = _clients[url] = AttributionClient(url)
    label = ground_truth if isinstance(ground_truth, str) else json.dumps(ground_truth)
    # The decoded response alone: no prompt for /reward to strip.
    result = client.reward(
        [solution_str], [""], [label], retriever=retriever, k=k, depth=depth, query_tag=query_tag
    )
    return float(result.rewards[0])
