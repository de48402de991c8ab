"""POST /reward: OpenRLHF's remote reward-model protocol. `query[i]` is prompt + response,
`prompts[i]` the prompt, `labels[i]` a label in the one label grammar (a catalog query id, or
graded labels with an optional pool, as a JSON string or object); the reward is the
retrieval NDCG of the response's search query."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from service.api.deps import ClientGone, ServicesDep, StateDep, client_gone, run_admitted
from service.api.handlers import ERROR_RESPONSES
from service.schemas import RewardRequest, RewardResponse

logger = logging.getLogger(__name__)

router = APIRouter(tags=["attribution"])


@router.post("/reward", response_model=RewardResponse, responses=ERROR_RESPONSES)  # type: ignore[arg-type]
async def reward(
    body: RewardRequest,
    request: Request,
    services: ServicesDep,
    state: StateDep,
    retriever: Annotated[str, Query(max_length=128)] = "default",
    k: Annotated[int, Query()] = 1000,
    depth: Annotated[int, Query()] = 1000,
    query_tag: Annotated[str, Query(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")] = "answer",
) -> RewardResponse | Response:
    """Rewards for OpenRLHF's `--remote_rm_url` (k: NDCG cutoff, depth: products searched
    before the pool filter, query_tag: the tag holding the search query, as /attribute)."""
    try:
        scored = await run_admitted(
            request,
            services,
            lambda: services.engine.reward(body, retriever, k, depth=depth, query_tag=query_tag),
        )
    except ClientGone:
        return client_gone("reward")
    stats = scored.stats
    state.metrics.record_reward(stats.unique, stats.cache_hits, stats.encoded)
    logger.info(
        "reward queries=%d unique=%d cache_hits=%d encoded=%d total_ms=%.1f",
        len(body.query),
        stats.unique,
        stats.cache_hits,
        stats.encoded,
        scored.total_ms,
    )
    return RewardResponse(
        rewards=scored.rewards, scores=scored.rewards, extra_logs={"ndcg": scored.rewards}
    )
