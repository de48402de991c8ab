"""OSPO advantages in verl 0.9's v1 trainer.

Modules: ``plugin`` (the ``verl.plugins`` entry point: registers the ``ospo`` estimator and
the ``ospo_*`` trainer modes as verl loads the modules they extend), ``settings`` (the
``algorithm.ospo`` config section and the settings refused), ``rollouts`` (TransferQueue rows
-> rollouts), ``estimator`` (the registered estimator), ``trainer`` (the trainer modes;
imports verl's v1 trainer), ``reward`` (a ``compute_score`` on the service's ``/reward``). Importing this package imports neither verl nor torch. How to run
it: docs/TRAINERS.md.
"""

from __future__ import annotations

from .settings import ESTIMATOR, TRAINER_MODES, OspoVerlSettings, refusals, settings_from_config

__all__ = ["ESTIMATOR", "TRAINER_MODES", "OspoVerlSettings", "refusals", "settings_from_config"]
