"""The OSPO trainer modes of verl's v1 trainer: ``ospo_sync``, ``ospo_colocate_async`` and
``ospo_separate_async``, each verl's own trainer class plus :class:`OspoAdvantageMixin`.

Importing this module imports verl's v1 trainer (the plug-in imports it only once verl's
``verl.trainer.ppo.v1`` package is loaded, i.e. in the process that runs the trainer).

``_compute_advantage`` runs in verl's TaskRunner actor, the driver. The mixin fetches the
step's responses, masks, rewards, uids and dataset labels from TransferQueue (the object
verl's trainer uses, ``trainer_base.tq``), decodes each row's trained tokens, asks the adapter
core for one step (seed ``seed + global_steps``), then runs verl's own ``_compute_advantage``
(KL and rollout correction, the estimator dispatch, the write-back of nested advantages)
with the result waiting for the ``ospo`` estimator. Step metrics go into verl's ``metrics``.
"""

from __future__ import annotations

import logging
from typing import Any

from omegaconf import OmegaConf, open_dict
from verl.trainer.ppo.v1 import trainer_base
from verl.trainer.ppo.v1.trainer_base import register_trainer
from verl.trainer.ppo.v1.trainer_colocate_async import PPOTrainerColocateAsync
from verl.trainer.ppo.v1.trainer_separate_async import PPOTrainerSeparateAsync
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

from .._adapter_types import AdapterError
from ..adapter import OspoAdapter
from .rollouts import PENDING, Pending, rollouts_from_batch
from .settings import baseline, refusals, settings_from_config

__all__ = [
    "OspoAdvantageMixin",
    "OspoPPOTrainerColocateAsync",
    "OspoPPOTrainerSeparateAsync",
    "OspoPPOTrainerSync",
]

logger = logging.getLogger(__name__)


class OspoAdvantageMixin:
    """OSPO token advantages in a v1 ``PPOTrainer`` (module docstring). ``base_mode`` is the
    verl mode the class extends: ``trainer.v1.trainer_mode`` is set back to it before verl's
    ``__init__``, because verl compares the mode with the literal ``"sync"`` (replay buffer,
    refill, checkpoints) and reads ``trainer.v1.<mode>`` settings under that name."""

    base_mode = "sync"
    config: Any
    tokenizer: Any
    global_steps: int

    def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
        def get(name: str) -> Any:
            value = OmegaConf.select(config, name, default=None)
            if OmegaConf.is_config(value):
                return OmegaConf.to_container(value, resolve=True)
            return value

        problems = refusals(get)
        if problems:
            raise AdapterError(
                "the OSPO trainer cannot run with this verl config:\n  " + "\n  ".join(problems)
            )
        self._ospo = settings_from_config(get("algorithm.ospo"))
        self._ospo_adapter: OspoAdapter | None = None
        with open_dict(config):
            config.trainer.v1.trainer_mode = self.base_mode
        super().__init__(config, *args, **kwargs)  # type: ignore[call-arg]

    def _compute_advantage(self, batch: Any, metrics: dict[str, Any]) -> Any:
        fields = ["uid", "prompts", "responses", "response_mask", "rm_scores"]
        fields.append(self._ospo.label_field[0])
        data = trainer_base.tq.kv_batch_get(
            keys=batch.keys, partition_id=batch.partition_id, select_fields=fields
        )
        rollouts, uids = rollouts_from_batch(
            data, batch.keys, self.tokenizer, self._ospo.label_field
        )
        result = self._ospo_adapter_for_run().step(
            rollouts, step=self.global_steps, baseline=baseline(self.config.algorithm)
        )
        metrics.update(result.metrics)
        token = PENDING.set(Pending(uids=uids, result=result))
        try:
            return super()._compute_advantage(batch, metrics)  # type: ignore[misc]
        finally:
            PENDING.reset(token)

    def fit(self, *args: Any, **kwargs: Any) -> Any:
        """verl's ``fit``; the service connection is closed when it ends."""
        try:
            return super().fit(*args, **kwargs)  # type: ignore[misc]
        finally:
            self.close_ospo()

    def close_ospo(self) -> None:
        """Close the adapter's connection (idempotent; a later step opens a new one)."""
        if self._ospo_adapter is not None:
            self._ospo_adapter.close()
            self._ospo_adapter = None

    def _ospo_adapter_for_run(self) -> OspoAdapter:
        if self._ospo_adapter is None:
            self._ospo_adapter = OspoAdapter(self._ospo.adapter)
        return self._ospo_adapter


@register_trainer("ospo_sync")
class OspoPPOTrainerSync(OspoAdvantageMixin, PPOTrainerSync):  # type: ignore[misc]
    base_mode = "sync"


@register_trainer("ospo_colocate_async")
class OspoPPOTrainerColocateAsync(OspoAdvantageMixin, PPOTrainerColocateAsync):  # type: ignore[misc]
    base_mode = "colocate_async"


@register_trainer("ospo_separate_async")
class OspoPPOTrainerSeparateAsync(OspoAdvantageMixin, PPOTrainerSeparateAsync):  # type: ignore[misc]
    base_mode = "separate_async"
