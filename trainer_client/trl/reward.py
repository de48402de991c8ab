"""``OspoReward``: a TRL reward function scoring each completion with the service's
``POST /reward`` (the retrieval NDCG of its search query against its label).

``GRPOTrainer`` needs reward functions even when OSPO supplies the advantages: their scalar
rewards set each group's advantage Â (``send_reward``) and are the fallback when a group
cannot be attributed. Give it the same ``Options`` as ``AdapterSettings.options``: their
``retriever``, ``k``, ``depth`` and ``query_tag`` go to ``/reward``, so the scalar reward and
the coalition values are one game.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .._client import AttributionClient
from .._types import Options

__all__ = ["OspoReward"]


class OspoReward:
    """``reward_funcs=[OspoReward(url)]``: one NDCG per completion, labels from the dataset
    column ``label_column`` (the label grammar of docs/TRAINERS.md)."""

    __name__ = "ospo_ndcg"  # TRL names a reward function (its metrics) by __name__

    def __init__(
        self,
        client: AttributionClient | str,
        *,
        label_column: str = "label",
        options: Options | None = None,
    ) -> None:
        self._owned = isinstance(client, str)
        self.client = AttributionClient(client) if isinstance(client, str) else client
        self.label_column = label_column
        self.options = options or Options()

    def close(self) -> None:
        """Close the connection this function opened (a client passed in stays open)."""
        if self._owned:
            self.client.close()

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
        game = self.options
        result = self.client.reward(
            texts,
            [""] * len(texts),
            labels,
            retriever=game.retriever,
            k=game.k,
            depth=game.depth,
            query_tag=game.query_tag,
        )
        return list(result.rewards)


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
