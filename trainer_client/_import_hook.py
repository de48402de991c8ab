"""Run code right after a module of a trainer has been imported, without importing it.

The trainer adapters patch or extend a trainer's classes lazily: a Ray worker that never
imports OpenRLHF's experience maker (or verl's trainer) never pays for it. `AfterImport`
finds the named modules through the other finders on ``sys.meta_path`` and runs the hook
right after the module has executed.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any

__all__ = ["AfterImport"]

Hook = Callable[[ModuleType], None]


class AfterImport(importlib.abc.MetaPathFinder):
    """A finder that runs ``hooks[name](module)`` right after module ``name`` executes.
    Insert it at the front of ``sys.meta_path``; remove it to stop."""

    def __init__(self, hooks: Mapping[str, Hook]) -> None:
        self._hooks = dict(hooks)

    @property
    def modules(self) -> frozenset[str]:
        """The modules this finder hooks."""
        return frozenset(self._hooks)

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        hook = self._hooks.get(fullname)
        if hook is None:
            return None
        for finder in sys.meta_path:
            if isinstance(finder, AfterImport):
                continue
            find_spec = getattr(finder, "find_spec", None)
            spec = find_spec(fullname, path, target) if find_spec is not None else None
            if spec is not None and spec.loader is not None:
                spec.loader = _HookedLoader(spec.loader, hook)
                return spec  # type: ignore[no-any-return]
        return None


class _HookedLoader(importlib.abc.Loader):
    def __init__(self, loader: Any, hook: Hook) -> None:
        self._loader = loader
        self._hook = hook

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)  # type: ignore[no-any-return]

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        self._hook(module)

    def __getattr__(self, name: str) -> Any:
        # get_source, get_filename, is_package, ...: whatever the real loader offers.
        return getattr(self._loader, name)
