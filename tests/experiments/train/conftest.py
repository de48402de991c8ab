"""Fixtures for the trainer tests: a fake in-process scorer for unit tests of the policy and
the loop. The demo catalog (`demo_catalog`) and the real service on loopback for the
end-to-end runs (`service_url`) come from tests/support."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pytest

from service.retrieval.catalog import Catalog
from trainer_client import (
    AttributeResult,
    Group,
    GroupResult,
    ModelInfo,
    Options,
    ResponseResult,
    RewardResult,
    Stats,
)

_WORD = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")


class FakeScorer:
    """Stands in for ``/attribute`` in unit tests: the reward of a response is the share of
    its target's key words it names (the words every exact-match title shares), and the
    token advantages are the group-normalised reward, spread uniformly (``uniform``) or onto
    the key words (``prop``/``rank``) so that they still average to the sequence advantage."""

    def __init__(self, catalog: Catalog) -> None:
        self.calls = 0
        self.reward_calls = 0
        self.key_words: dict[str, set[str]] = {}
        for query_id, gains in catalog.labels.items():
            titles = [catalog.product(pid) for pid, gain in gains.items() if gain >= 1.0]
            word_sets = [set(_WORD.findall(p.title.lower())) for p in titles if p is not None]
            self.key_words[query_id] = set.intersection(*word_sets) if word_sets else set()

    def score(self, query_id: str, text: str) -> float:
        wanted = self.key_words[query_id]
        if not wanted:
            return 0.0
        return len(wanted & set(_WORD.findall(text.lower()))) / len(wanted)

    def reward(
        self, queries: Sequence[str], prompts: Sequence[str], labels: Sequence[str]
    ) -> RewardResult:
        """``/reward``: the response is the query minus its prompt, the label a query id."""
        self.reward_calls += 1
        rewards = tuple(
            self.score(label, query[len(prompt) :] if query.startswith(prompt) else query)
            for query, prompt, label in zip(queries, prompts, labels, strict=True)
        )
        return RewardResult(rewards=rewards, scores=rewards)

    def attribute(self, groups: Sequence[Group], options: Options | None = None) -> AttributeResult:
        self.calls += 1
        mode = (options.redistribution if options else None) or "prop"
        results = []
        for group in groups:
            assert group.target.query_id is not None
            rewards = np.array([self.score(group.target.query_id, r.text) for r in group.responses])
            if len(rewards) > 1:
                advantages = (rewards - rewards.mean()) / (rewards.std(ddof=1) + 1e-6)
            else:
                advantages = np.zeros_like(rewards)
            responses = []
            for response, reward, advantage in zip(
                group.responses, rewards, advantages, strict=True
            ):
                offsets = list(response.token_offsets or [])
                tokens = [response.text[a:b].lower() for a, b in offsets]
                weights = np.array(
                    [1.0 if t in self.key_words[group.target.query_id] else 0.0 for t in tokens]
                )
                if mode == "uniform" or not weights.any():
                    values = np.full(len(offsets), advantage)
                else:
                    values = len(offsets) * advantage * weights / weights.sum()
                responses.append(
                    ResponseResult(
                        reward=float(reward),
                        advantage=float(advantage),
                        segments=(),
                        token_advantages=tuple(float(v) for v in values) if offsets else None,
                    )
                )
            results.append(GroupResult(id=group.id, responses=tuple(responses)))
        return AttributeResult(
            groups=tuple(results),
            stats=Stats(),
            model=ModelInfo(retriever="fake", encoder="fake", index_version="0"),
        )


@pytest.fixture
def fake_scorer(demo_catalog: Catalog) -> FakeScorer:
    return FakeScorer(demo_catalog)
