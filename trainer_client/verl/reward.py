"""A verl reward function on the service's ``POST /reward``: the retrieval NDCG of each
response's search query against its ``ground_truth`` label (the label grammar of
docs/TRAINERS.md), so verl's scalar rewards and OSPO's coalition values are one game::

    reward.custom_reward_function.path=pkg://trainer_client.verl.reward
    reward.custom_reward_function.name=compute_score
    +reward.custom_reward_function.reward_kwargs.url=http://OSPO_HOST:8000

``/reward`` scores with the service's default retriever and ``k``; keep
``algorithm.ospo.retriever``/``k`` unset with it (or score with your own function). verl calls
this in its reward workers, one response at a time; clients are kept per URL and process.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from .._client import AttributionClient

__all__ = ["compute_score"]

_clients: dict[str, AttributionClient] = {}
_lock = threading.Lock()


def compute_score(
    data_source: Any,
    solution_str: str,
    ground_truth: Any,
    extra_info: Any = None,
    *,
    url: str,
    **kwargs: Any,
) -> float:
    """verl's ``compute_score`` contract; ``url`` comes from ``reward_kwargs``."""
    with _lock:
        client = _clients.get(url)
        if client is None:
            client = _clients[url] = AttributionClient(url)
    label = ground_truth if isinstance(ground_truth, str) else json.dumps(ground_truth)
    # The decoded response alone: no prompt for /reward to strip.
    return float(client.reward([solution_str], [""], [label]).rewards[0])
