"""Kept so ``python -m trainer_client.openrlhf_train`` keeps working; the launcher lives in
``trainer_client.openrlhf.launch`` (see its docstring)."""

from __future__ import annotations

from .openrlhf.launch import SETUP_HOOK, main, runtime_env, split_ospo_flags
from .openrlhf.settings import OSPO_FLAGS

__all__ = ["OSPO_FLAGS", "SETUP_HOOK", "main", "runtime_env", "split_ospo_flags"]

if __name__ == "__main__":
    raise SystemExit(main())
