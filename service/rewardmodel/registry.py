"""RewardModelRegistry: the configured reward models by name, built from their specs.

In-process models load their weights in `load` (blocking: the app's lifespan calls it on a
worker thread); remote ones only remember their URL and connect on first use.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence

from service.rewardmodel.base import RewardModel, UnknownRewardModel
from service.rewardmodel.spec import RewardModelSpec

logger = logging.getLogger(__name__)


def build_reward_model(spec: RewardModelSpec) -> RewardModel:
    """The backend a spec names: RemoteRewardModel for `url`, HFRewardModel for `model`."""
    if spec.url is not None:
        try:
            from service.rewardmodel.remote import RemoteRewardModel
        except ImportError as exc:  # httpx is an optional dependency of the service
            raise RuntimeError(
                f"reward model {spec.name!r}: the remote backend needs httpx "
                f"(pip install httpx): {exc}"
            ) from exc
        return RemoteRewardModel(spec)
    from service.rewardmodel.hf import HFRewardModel

    return HFRewardModel(spec)


class RewardModelRegistry:
    """Reward models by configured name."""

    def __init__(self, models: Mapping[str, RewardModel] | None = None) -> None:
        self._models = dict(models or {})

    @classmethod
    def load(cls, specs: Sequence[RewardModelSpec]) -> RewardModelRegistry:
        names = [spec.name for spec in specs]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"reward model name(s) configured twice: {', '.join(duplicates)}")
        models: dict[str, RewardModel] = {}
        for spec in specs:
            model = build_reward_model(spec)
            models[spec.name] = model
            logger.info(
                "reward model %s ready: %s %s (version %s)",
                spec.name,
                spec.backend,
                model.identity,
                model.version,
            )
        return cls(models)

    def get(self, name: str, field: str = "target.reward_model") -> RewardModel:
        """The named model; UnknownRewardModel (404) naming `field` otherwise."""
        model = self._models.get(name)
        if model is None:
            available = ", ".join(self._models) or "none configured"
            raise UnknownRewardModel(
                f"{field}: no reward model named {name!r} (available: {available})", field=field
            )
        return model

    def names(self) -> list[str]:
        return list(self._models)

    def __len__(self) -> int:
        return len(self._models)

    def __iter__(self) -> Iterator[RewardModel]:
        return iter(self._models.values())

    async def aclose(self) -> None:
        for model in self._models.values():
            try:
                await model.aclose()
            except Exception:  # closing one must not keep the others open
                logger.exception("closing reward model %s failed", model.name)


__all__ = ["RewardModelRegistry", "build_reward_model"]
