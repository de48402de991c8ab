"""OSPO advantages in TRL 1.16's ``GRPOTrainer``: :class:`OspoGRPOTrainer` (``trainer``), and
:class:`OspoReward`, a reward function on the service's ``/reward`` (``reward``).

Importing this package imports TRL and torch. How to train with it: docs/TRAINERS.md.
"""

from __future__ import annotations

from .reward import OspoReward
from .trainer import SUPPORTED_TRL, OspoGRPOTrainer, check_trl_version, completion_tokens, refusals

__all__ = [
    "SUPPORTED_TRL",
    "OspoGRPOTrainer",
    "OspoReward",
    "check_trl_version",
    "completion_tokens",
    "refusals",
]
