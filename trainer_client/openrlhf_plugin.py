"""Kept so ``trainer_client.openrlhf_plugin.install`` (the Ray setup-hook string in existing
launch scripts) and imports of the old names keep working; the plug-in lives in
``trainer_client.openrlhf``. Importing this module imports neither openrlhf nor torch."""

from __future__ import annotations

from .openrlhf.core import (
    assign_advantages,
    ospo_token_advantages,
    response_ids,
    scatter_token_values,
)
from .openrlhf.patch import install, is_installed, uninstall
from .openrlhf.settings import (
    ACCEPTED_ESTIMATORS,
    SUPPORTED_OPENRLHF,
    OspoPluginError,
    PluginSettings,
    check_estimator,
    check_openrlhf_version,
)

__all__ = [
    "ACCEPTED_ESTIMATORS",
    "SUPPORTED_OPENRLHF",
    "OspoPluginError",
    "PluginSettings",
    "assign_advantages",
    "check_estimator",
    "check_openrlhf_version",
    "install",
    "is_installed",
    "ospo_token_advantages",
    "response_ids",
    "scatter_token_values",
    "uninstall",
]
