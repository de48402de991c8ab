"""The OpenRLHF 0.11 plug-in: per-token OSPO advantages in place of OpenRLHF's advantage step.

Modules: ``settings`` (``--ospo.*`` settings and the configurations refused), ``core``
(experiences <-> the adapter core: the one assembly path), ``patch`` (:func:`install`, lazy:
it patches only when OpenRLHF's experience maker is imported), ``launch`` (the launcher,
``python -m trainer_client.openrlhf_train``). Importing this package imports neither openrlhf
nor torch. How to run it: docs/TRAINERS.md.
"""

from __future__ import annotations

from .patch import install, is_installed, uninstall
from .settings import OspoPluginError, PluginSettings

__all__ = ["OspoPluginError", "PluginSettings", "install", "is_installed", "uninstall"]
