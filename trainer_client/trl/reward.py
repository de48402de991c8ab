"""``OspoReward``: a TRL reward function scoring each completion with the service's
``POST /reward`` (the retrieval NDCG of its search query against its label).

``GRPOTrainer`` needs reward functions even when OSPO supplies the advantages: their scalar
rewards set each group's advantage Â (``send_reward``) and are the fallback when a group
cannot be attributed. This one plays the same retrieval game as ``/attribute`` as long as
both use the service's default retriever and ``k`` (``/reward`` takes them as URL
parameters, which this function does not set); with another retriever or ``k`` in
``AdapterSettings.options``, use ``send_reward=False`` (the service then computes the reward
itself) or a reward function of your own.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .._client import AttributionClient

__all__ = ["OspoReward"]


class OspoReward:
    """``reward_funcs=[OspoReward(url)]``: one NDCG per completion, labels from the dataset
    column ``label_column`` (the label grammar of docs/TRAINERS.md)."""

    __name__ = "ospo_ndcg"  # TRL names a reward function (its metrics) by __name__

    def __init__(self, client: AttributionClient | str, *, label_column: str = "label") -> None:
        self.client = AttributionClient(client) if isinstance(client, str) else client
        self.label_column = label_column

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any
    ) -> list[float]:
        if self.label_column not in kwargs:
            raise KeyError(
                f"OspoReward needs the dataset column {self.label_column!r} "
                f"(columns given: {', '.join(sorted(kwargs))})"
            )
        labels = [_label_text(label) for label in kwargs[self.label_column]]
        texts = [_completion_text(c) for c in completions]
        # The completion alone is the response: no prompt for /reward to strip.
        return list(self.client.reward(texts, [""] * len(texts), labels).rewards)


def _completion_text(completion: Any) -> str:
    if isinstance(completion, str):
        return completion
    # Conversational: [{"role": "assistant", "content": "..."}]
    return "".join(str(message.get("content") or "") for message in completion)


def _label_text(label: Any) -> str:
    if isinstance(label, str):
        return label
    if isinstance(label, int) and not isinstance(label, bool):
        return str(label)
    return json.dumps(label)
