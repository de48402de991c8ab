"""Value functions ("games") of the engine: retrieval NDCG and reward-model scores."""

from __future__ import annotations

from service.engine.games.base import RETRIEVAL, REWARD_MODEL, Game
from service.engine.games.retrieval import RETRIEVAL_LANE, RetrievalGame, RowScorer
from service.engine.games.reward_model import RewardModelGame

__all__ = [
    "RETRIEVAL",
    "RETRIEVAL_LANE",
    "REWARD_MODEL",
    "Game",
    "RetrievalGame",
    "RewardModelGame",
    "RowScorer",
]
