"""The verl plug-in: loaded by ``import verl`` through the ``verl.plugins`` entry point
(``pyproject.toml``: ``ospo = "trainer_client.verl.plugin"``), or by
``VERL_USE_EXTERNAL_MODULES=trainer_client.verl.plugin`` where the package is not installed.

Importing it imports neither verl's trainer nor torch, so the many Ray workers that import
verl and never compute advantages pay nothing: :func:`install` registers

- the ``ospo`` estimator (``register_adv_est``) right after ``verl.trainer.ppo.core_algos``
  has loaded, and
- the trainer modes ``ospo_sync``, ``ospo_colocate_async``, ``ospo_separate_async``
  (``register_trainer``) right after ``verl.trainer.ppo.v1`` has loaded, which verl's
  TaskRunner does just before it looks the mode up,

or at once when those modules are already loaded. verl swallows a plug-in's import errors
(logged at DEBUG), so a failure here is logged as an error before it propagates.
"""

from __future__ import annotations

import functools
import importlib
import logging
import sys
import threading
from collections.abc import Callable
from types import ModuleType

from .._import_hook import AfterImport

__all__ = ["install", "register_estimator", "register_trainers"]

logger = logging.getLogger(__name__)

CORE_ALGOS = "verl.trainer.ppo.core_algos"
V1 = "verl.trainer.ppo.v1"
_lock = threading.RLock()


def register_estimator(core_algos: ModuleType | None = None) -> None:
    """``register_adv_est("ospo")`` (idempotent)."""
    from .estimator import ospo_advantage
    from .settings import ESTIMATOR

    module = core_algos or importlib.import_module(CORE_ALGOS)
    module.register_adv_est(ESTIMATOR)(ospo_advantage)


def register_trainers(v1: ModuleType | None = None) -> None:
    """The OSPO trainer modes (importing ``trainer_client.verl.trainer`` registers them)."""
    importlib.import_module("trainer_client.verl.trainer")


_HOOKS: dict[str, Callable[[ModuleType], None]] = {
    CORE_ALGOS: register_estimator,
    V1: register_trainers,
}


def install() -> None:
    """Register now what is loaded, and the rest as soon as it loads (idempotent)."""
    global _finder
    with _lock:
        if _finder is None or _finder not in sys.meta_path:
            _finder = AfterImport(
                {name: functools.partial(_run_locked, name, hook) for name, hook in _HOOKS.items()}
            )
            sys.meta_path.insert(0, _finder)
        for name, hook in _HOOKS.items():
            module = sys.modules.get(name)
            if module is not None and not _initialising(module):
                _run(name, hook, module)


_finder: AfterImport | None = None


def _run_locked(name: str, hook: Callable[[ModuleType], None], module: ModuleType) -> None:
    with _lock:
        _run(name, hook, module)


def _initialising(module: ModuleType) -> bool:
    spec = getattr(module, "__spec__", None)
    return bool(getattr(spec, "_initializing", False))


def _run(name: str, hook: Callable[[ModuleType], None], module: ModuleType) -> None:
    try:
        hook(module)
    except Exception:
        logger.exception("the OSPO verl plug-in could not register after %s loaded", name)
        raise


install()
