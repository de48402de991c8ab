"""POST /reward: OpenRLHF's remote reward-model protocol. `query[i]` is prompt + response,
`prompts[i]` the prompt, `labels[i]` a catalog query id or graded labels as a JSON object
(`{"P1": 1.0}` or `{"relevant": {...}, "pool": [...]}`); the reward is the retrieval NDCG of
the response's search query."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Query

from service.api.deps import ServicesDep, StateDep
from service.api.routes.attribute import ERROR_RESPONSES
from service.attribution import extract_query
from service.engine.attribute import ScoringTarget
from service.errors import InvalidRequest
from service.schemas import MAX_GAIN, RewardRequest, RewardResponse

if TYPE_CHECKING:
    from service.retrieval.registry import Retriever

logger = logging.getLogger(__name__)

router = APIRouter(tags=["attribution"])


def response_text(query: str, prompt: str | None) -> str:
    """The response part of `query` (prompt + response as the trainer decoded it)."""
    if prompt and query.startswith(prompt):
        return query[len(prompt) :]
    return query


def _gains(value: Any, field: str) -> dict[str, float]:
    if not isinstance(value, Mapping) or not value:
        raise InvalidRequest(
            f"{field} must be a non-empty object of product id -> gain", field=field
        )
    gains: dict[str, float] = {}
    for product_id, gain in value.items():
        if (
            isinstance(gain, bool)
            or not isinstance(gain, int | float)
            or not gain > 0
            or not gain <= MAX_GAIN
        ):
            raise InvalidRequest(
                f"{field}: the gain of {product_id!r} must be a number in (0, {MAX_GAIN:g}]",
                field=field,
            )
        gains[str(product_id)] = float(gain)
    return gains


def scoring_target(
    services: ServicesDep, retriever: Retriever, label: Any, field: str
) -> ScoringTarget:
    """The labels (and pool) one `labels[i]` entry stands for."""
    if label is None or label == "":
        raise InvalidRequest(
            f"{field} is missing: give a catalog query id or graded labels", field=field
        )
    if isinstance(label, str):
        stripped = label.strip()
        if not stripped.startswith("{"):
            return ScoringTarget.build(
                services.engine.resolve_labels(retriever, stripped, field), None
            )
        try:
            label = json.loads(stripped)
        except ValueError as exc:
            raise InvalidRequest(f"{field} is not valid JSON: {exc}", field=field) from exc
    if isinstance(label, Mapping) and (
        "relevant" in label or "query_id" in label or "pool" in label
    ):
        pool = label.get("pool")
        if pool is not None and (
            not isinstance(pool, list) or not all(isinstance(p, str) for p in pool)
        ):
            raise InvalidRequest(
                f"{field}.pool must be a list of product ids", field=f"{field}.pool"
            )
        if "query_id" in label:
            labels = services.engine.resolve_labels(
                retriever, str(label["query_id"]), f"{field}.query_id"
            )
        else:
            labels = _gains(label.get("relevant"), f"{field}.relevant")
        return ScoringTarget.build(labels, pool)
    return ScoringTarget.build(_gains(label, field), None)


@router.post("/reward", response_model=RewardResponse, responses=ERROR_RESPONSES)  # type: ignore[arg-type]
async def reward(
    body: RewardRequest,
    services: ServicesDep,
    state: StateDep,
    retriever: Annotated[str, Query(max_length=128)] = "default",
    k: Annotated[int, Query()] = 1000,
) -> RewardResponse:
    """Rewards for OpenRLHF's `--remote_rm_url`."""
    settings = state.settings
    count = len(body.query)
    limit = settings.max_groups * settings.max_responses
    if count == 0:
        raise InvalidRequest("query is empty", field="query")
    if count > limit:
        raise InvalidRequest(f"query has {count} entries; the limit is {limit}", field="query")
    if not 1 <= k <= settings.max_k:
        raise InvalidRequest(
            f"k is {k}; it must be between 1 and max_k={settings.max_k}", field="k"
        )
    for name, values in (("prompts", body.prompts), ("labels", body.labels)):
        if values is not None and len(values) != count:
            raise InvalidRequest(
                f"{name} has {len(values)} entries for {count} queries", field=name
            )
    found = services.engine.retriever(retriever, "retriever")
    prompts: list[str | None] = list(body.prompts) if body.prompts else [None] * count
    labels = body.labels or [None] * count
    items: list[tuple[str, ScoringTarget]] = []
    for i, (query, prompt) in enumerate(zip(body.query, prompts, strict=True)):
        text = response_text(query, prompt)
        if len(text) > settings.max_text_chars:
            raise InvalidRequest(
                f"query[{i}] has a {len(text)}-character response; the limit is "
                f"max_text_chars={settings.max_text_chars}",
                field=f"query[{i}]",
            )
        start, end = extract_query(text)
        items.append((text[start:end], scoring_target(services, found, labels[i], f"labels[{i}]")))
    async with services.admission.slot():
        rewards, stats, timer = await services.engine.score_queries(retriever, items, k)
    state.metrics.cache_hits.inc(stats.cache_hits)
    state.metrics.cache_misses.inc(stats.unique - stats.cache_hits)
    state.metrics.encoded.inc(stats.encoded)
    logger.info(
        "reward queries=%d unique=%d cache_hits=%d encoded=%d total_ms=%.1f",
        count,
        stats.unique,
        stats.cache_hits,
        stats.encoded,
        timer.total_s() * 1000.0,
    )
    return RewardResponse(
        rewards=rewards,
        scores=rewards,
        extra_logs={"ndcg": rewards},
    )
