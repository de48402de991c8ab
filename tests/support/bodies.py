"""Request builders shared by the engine, games and benchmark tests: a retrieval group on a
demo catalog query, a reward-model group of hotel reviews, and a way to run one through an
AttributionEngine. Plain helpers (no fixtures)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

PROMPT = "Write a short hotel review.\n"
REVIEWS = [
    "The hotel was near the station. The breakfast was delightful, I love it. The room was small.",
    "The room was small. The staff were great. The view was plain.",
    "It rained all week. The food was terrible. We left early.",
    "We arrived late. Check-in took an hour.",
]


def target_text(catalog: Any, query_id: str) -> str:
    attrs = catalog.query_attributes[query_id]
    noun = attrs["category"].replace("-", " ").rstrip("s")
    parts = [attrs.get("colour", ""), attrs.get("material", ""), noun]
    extra = [attrs[key] for key in ("feature", "gender", "size", "brand") if key in attrs]
    return " ".join(p for p in parts if p) + ", " + ", ".join(extra)


def request_body(catalog: Any, query_id: str = "demo-0000", **options: Any) -> dict[str, Any]:
    """One retrieval group: a precise answer inside reasoning, filler, the bare precise
    query, more filler; whitespace token offsets."""
    good = target_text(catalog, query_id)
    texts = [
        f"<think>the user wants a lamp</think><answer>please, {good}, thanks</answer>",
        "<answer>I think something nice, thanks</answer>",
        good,
        "please help me, I think, thanks a lot, cheers",
    ]
    responses = []
    for text in texts:
        offsets = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
        responses.append({"text": text, "token_offsets": offsets})
    return {
        "groups": [{"id": "g0", "target": {"query_id": query_id}, "responses": responses}],
        "options": {"max_width": 4, "max_coalitions": 24, "k": 50, **options},
    }


def reward_model_engine(registry: Any, url: str, cache: Any = None, **spec: Any) -> Any:
    """An engine with one remote reward model, `sentiment`, at `url` (no retries)."""
    from service.engine import AttributionEngine, EncodeBatcher
    from service.rewardmodel import RewardModelRegistry, RewardModelSpec
    from service.rewardmodel.remote import RemoteRewardModel

    values = {"name": "sentiment", "url": url, "retries": 0, "timeout_s": 5.0, **spec}
    models = RewardModelRegistry({"sentiment": RemoteRewardModel(RewardModelSpec(**values))})
    return AttributionEngine(
        registry, cache, batcher=EncodeBatcher(window_s=0), reward_models=models
    )


def reward_model_body(
    responses: list[str] = REVIEWS, prompt: str = PROMPT, **options: Any
) -> dict[str, Any]:
    """One group scored by `sentiment`, one token per character, explain on."""
    return {
        "groups": [
            {
                "id": "g0",
                "prompt": prompt,
                "target": {"reward_model": "sentiment"},
                "responses": [
                    {"text": text, "token_offsets": [[m, m + 1] for m in range(len(text))]}
                    for text in responses
                ],
            }
        ],
        "options": {"explain": True, "max_coalitions": 64, **options},
    }


def run(engine: Any, body: dict[str, Any], **kwargs: Any) -> Any:
    """engine.attribute(body) to completion."""
    from service.schemas import AttributeRequest

    return asyncio.run(engine.attribute(AttributeRequest.model_validate(body), **kwargs))


def numbers(response: Any) -> list[Any]:
    """Every number of an answer: (reward, advantage, [(value, credit)], token advantages)."""
    return [
        (r.reward, r.advantage, [(s.value, s.credit) for s in r.segments], r.token_advantages)
        for g in response.groups
        for r in g.responses
    ]
