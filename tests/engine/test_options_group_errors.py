"""options.errors = "group" when a game fails at evaluation time: a reward model answering
502/504 fails only the groups it scores, nothing of it is cached, and the retrieval groups
of the same request are scored as if it were absent. The default stays strict."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from service.engine import AttributionEngine, EncodeBatcher
from service.rewardmodel import RewardModelError, RewardModelRegistry, RewardModelSpec
from service.schemas import AttributeRequest


class FlakyRewardModel:
    """A reward model that fails (as a remote one does after its retries) until `heal()`."""

    def __init__(self, name: str) -> None:
        self.spec = RewardModelSpec(name=name, url="http://rm.invalid/score")
        self.failing = True
        self.calls = 0

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def version(self) -> str:
        return "v1"

    @property
    def identity(self) -> str:
        return "http://rm.invalid/score"

    async def score(
        self, prompts: Sequence[str], responses: Sequence[str], labels: Sequence[str]
    ) -> np.ndarray:
        self.calls += 1
        if self.failing:
            raise RewardModelError(self.name, f"reward model {self.name!r} answered 502")
        return np.asarray([float(len(r.split())) for r in responses])

    async def aclose(self) -> None:
        return None


def body(small_catalog: Any, **options: Any) -> dict[str, Any]:
    rm_group = {
        "id": "rm",
        "prompt": "Review: ",
        "target": {"reward_model": "flaky"},
        "responses": [{"text": "Great room. Bad food."}, {"text": "Fine stay."}],
    }
    retrieval = {
        "id": "search",
        "target": {"query_id": "demo-0000"},
        "responses": [{"text": "red leather boots"}, {"text": "something nice"}],
    }
    return {"groups": [retrieval, rm_group], "options": {"k": 50, **options}}


def run(engine: AttributionEngine, payload: dict[str, Any]) -> Any:
    return asyncio.run(engine.attribute(AttributeRequest.model_validate(payload)))


def test_a_failing_reward_model_fails_only_its_groups(
    registry: Any, small_catalog: Any, cache: Any
) -> None:
    model = FlakyRewardModel("flaky")
    engine = AttributionEngine(
        registry,
        cache,
        batcher=EncodeBatcher(window_s=0),
        reward_models=RewardModelRegistry({"flaky": model}),
    )
    result = run(engine, body(small_catalog, errors="group"))
    search, failed = result.groups
    assert failed.responses == [] and failed.error is not None
    assert failed.error.code == "backend_error" and "flaky" in failed.error.message
    assert search.error is None and len(search.responses) == 2
    alone = run(
        AttributionEngine(registry, None, batcher=EncodeBatcher(window_s=0)),
        {"groups": [body(small_catalog)["groups"][0]], "options": {"k": 50}},
    )
    assert [r.reward for r in search.responses] == [r.reward for r in alone.groups[0].responses]
    # Nothing of the failed game was cached: once the model answers, it is asked again.
    model.failing = False
    calls = model.calls
    healed = run(engine, body(small_catalog, errors="group"))
    assert model.calls == calls + 1 and healed.groups[1].error is None
    assert len(healed.groups[1].responses) == 2


def test_the_default_fails_the_request_with_the_backend_error(
    registry: Any, small_catalog: Any, cache: Any
) -> None:
    engine = AttributionEngine(
        registry,
        cache,
        batcher=EncodeBatcher(window_s=0),
        reward_models=RewardModelRegistry({"flaky": FlakyRewardModel("flaky")}),
    )
    with pytest.raises(RewardModelError):
        run(engine, body(small_catalog))
