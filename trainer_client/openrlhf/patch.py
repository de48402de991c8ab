"""Installing the plug-in into OpenRLHF, lazily.

:func:`install` (Ray's ``worker_process_setup_hook``; it runs in every Ray worker) reads the
settings and registers an import hook; it imports neither openrlhf nor torch, so workers that
never build experiences (vLLM engines, model shards) never load OpenRLHF's trainer stack
because of us. When OpenRLHF's experience maker is imported (in the trainer actor), the hook
wraps ``RemoteExperienceMaker.compute_advantages_and_returns``:

1. refuse what the plug-in cannot honour (:func:`~.settings.refusals`: estimator, gspo, KL
   in the reward, agent mode, no ``--data.label_key``, a ``/reward`` URL on another
   retriever), one line each, before anything runs;
2. run OpenRLHF's own method (its group estimator);
3. :func:`~.core.assign_advantages` — the one assembly path — with the step's seed.

When ``openrlhf.trainer.ppo_trainer`` is imported, ``BasePPOTrainer.train_step`` is wrapped
too, only to hand the trainer's global step to the experience maker (the coalition sample's
seed is ``seed + global_step``; without it, steps are counted from 0).
"""

from __future__ import annotations

import functools
import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from .._import_hook import AfterImport
from ..adapter import OspoAdapter
from .core import assign_advantages, group_keys
from .settings import (
    ESTIMATOR_BASELINE,
    OPENRLHF_DEFAULTS,
    OspoPluginError,
    PluginSettings,
    check_openrlhf_version,
    refusals,
)

__all__ = ["install", "is_installed", "uninstall"]

logger = logging.getLogger(__name__)

EXPERIENCE_MAKER = "openrlhf.trainer.ppo_utils.experience_maker"
TRAINER = "openrlhf.trainer.ppo_trainer"
_WRAPPED_FLAG = "__ospo_wrapped__"
_STEP_ATTRIBUTE = "_ospo_global_step"


@dataclass
class _State:
    settings: PluginSettings | None = None
    adapter: OspoAdapter | None = None
    originals: dict[tuple[type, str], Callable[..., Any]] = field(default_factory=dict)
    finder: AfterImport | None = None
    lock: threading.RLock = field(default_factory=threading.RLock)


_state = _State()


def install(settings: PluginSettings | None = None) -> None:
    """Install the plug-in (idempotent; a second call only replaces the settings).

    Called with no argument as Ray's ``worker_process_setup_hook``: the settings then come
    from the ``OSPO_*`` environment. Raises :class:`OspoPluginError` for an unsupported
    OpenRLHF version or bad settings, so a misconfigured worker fails at start.
    """
    check_openrlhf_version()
    resolved = settings or PluginSettings.from_env()
    with _state.lock:
        _state.settings = resolved
        _close_adapter()
        if _state.finder is None:
            _state.finder = AfterImport(
                {name: _when_installed(patch) for name, patch in _PATCHES.items()}
            )
            sys.meta_path.insert(0, _state.finder)
        for name, patch in _PATCHES.items():
            module = sys.modules.get(name)
            if module is not None and hasattr(module, "__spec__"):
                patch(module)
    logger.info(
        "OSPO plug-in installed (service %s, on_failure=%s)", resolved.url, resolved.on_failure
    )


def uninstall() -> None:
    """Restore OpenRLHF's methods and remove the import hook (tests)."""
    with _state.lock:
        for (cls, name), original in _state.originals.items():
            setattr(cls, name, original)
        _state.originals.clear()
        if _state.finder is not None and _state.finder in sys.meta_path:
            sys.meta_path.remove(_state.finder)
        _state.finder = None
        _close_adapter()
        _state.settings = None


def is_installed() -> bool:
    """True while :func:`install` is in effect: OpenRLHF's method is wrapped, or will be
    when its experience maker is imported."""
    return _state.settings is not None


def _close_adapter() -> None:
    if _state.adapter is not None:
        _state.adapter.close()
    _state.adapter = None


def _adapter() -> OspoAdapter:
    with _state.lock:
        if _state.adapter is None:
            assert _state.settings is not None, "the OSPO plug-in is not installed"
            _state.adapter = OspoAdapter(_state.settings.adapter_settings())
        return _state.adapter


# --------------------------------------------------------------------------- the wrappers


def _wrap(cls: type, name: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    current = getattr(cls, name)
    if getattr(current, _WRAPPED_FLAG, False):
        return
    wrapper = functools.wraps(current)(make(current))
    setattr(wrapper, _WRAPPED_FLAG, True)
    _state.originals[(cls, name)] = current
    setattr(cls, name, wrapper)


def _patch_experience_maker(module: ModuleType) -> None:
    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        def compute_advantages_and_returns(self: Any, experiences: list[Any]) -> list[Any]:
            import torch

            settings = _state.settings
            if settings is None:  # uninstalled while a wrapped class lived on
                return original(self, experiences)  # type: ignore[no-any-return]
            estimator = _estimator_of(self)
            problems = refusals(_args_getter(self, estimator), settings)
            if problems:
                raise OspoPluginError(
                    "the OSPO plug-in cannot run with these OpenRLHF settings:\n  "
                    + "\n  ".join(problems)
                )
            result = original(self, experiences)
            n_samples = int(self.strategy.args.rollout.n_samples_per_prompt)
            with torch.no_grad():
                assign_advantages(
                    result,
                    self.tokenizer,
                    _adapter(),
                    groups=group_keys(result, n_samples),
                    step=getattr(self, _STEP_ATTRIBUTE, None),
                    baseline=ESTIMATOR_BASELINE[str(estimator)],
                )
            return result  # type: ignore[no-any-return]

        return compute_advantages_and_returns

    _wrap(module.RemoteExperienceMaker, "compute_advantages_and_returns", make)


def _patch_trainer(module: ModuleType) -> None:
    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        def train_step(self: Any, rollout_samples: Any, global_step: int) -> Any:
            maker = getattr(self, "experience_maker", None)
            if maker is not None:
                setattr(maker, _STEP_ATTRIBUTE, int(global_step))
            return original(self, rollout_samples, global_step)

        return train_step

    _wrap(module.BasePPOTrainer, "train_step", make)


_PATCHES: dict[str, Callable[[ModuleType], None]] = {
    EXPERIENCE_MAKER: _patch_experience_maker,
    TRAINER: _patch_trainer,
}


def _estimator_of(maker: Any) -> str | None:
    args = getattr(getattr(maker, "strategy", None), "args", None)
    try:
        from_args = args.algo.advantage.estimator  # type: ignore[union-attr]
    except AttributeError:
        from_args = None
    own = getattr(maker, "advantage_estimator", None)
    if from_args is not None and own is not None and from_args != own:
        raise OspoPluginError(f"estimator mismatch: args say {from_args}, maker says {own}")
    return from_args if from_args is not None else own  # type: ignore[no-any-return]


def _args_getter(maker: Any, estimator: str | None) -> Callable[[str], Any]:
    args = maker.strategy.args

    def get(name: str) -> Any:
        if name == "algo.advantage.estimator":
            return estimator
        if name == "algo.kl.init_coef":
            controller = getattr(maker, "kl_ctl", None)
            if controller is not None and hasattr(controller, "value"):
                return controller.value  # the live coefficient (an adaptive one moves)
        value: Any = args
        for part in name.split("."):
            if not hasattr(value, part):
                return OPENRLHF_DEFAULTS.get(name)
            value = getattr(value, part)
        return value

    return get


# --------------------------------------------------------------------------- the import hook


def _when_installed(patch: Callable[[ModuleType], None]) -> Callable[[ModuleType], None]:
    """Patch a module the import hook found, unless the plug-in was uninstalled meanwhile."""

    def run(module: ModuleType) -> None:
        with _state.lock:
            if _state.settings is not None:
                patch(module)

    return run
