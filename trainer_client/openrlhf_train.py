"""Launch OpenRLHF's ``train_ppo_ray`` with the OSPO plug-in installed in every Ray worker.

Usage::

    python -m trainer_client.openrlhf_train <usual train_ppo_ray flags> \\
        --ospo.url http://SERVICE:8000 [--ospo.redistribution prop] [--ospo.on_failure fail] ...

The ``--ospo.*`` flags are stripped and passed to the workers as ``OSPO_*`` environment
variables; ``ray.init`` gets ``worker_process_setup_hook="trainer_client.openrlhf_plugin.install"``
(the experience maker runs inside a Ray actor, so a patch applied only here would not be
seen there); then ``openrlhf.cli.train_ppo_ray`` runs as ``__main__`` (its argument parsing
lives under ``if __name__ == "__main__"``). OpenRLHF calls ``ray.init`` only when Ray is not
initialised yet, so ours, made first, wins.
"""

from __future__ import annotations

import os
import runpy
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .openrlhf_plugin import ACCEPTED_ESTIMATORS, OspoPluginError, PluginSettings

__all__ = ["OSPO_FLAGS", "main", "runtime_env", "split_ospo_flags"]

OSPO_FLAGS: Mapping[str, str] = {
    "url": "OSPO_ATTRIBUTE_URL",
    "api_key": "OSPO_API_KEY",
    "retriever": "OSPO_RETRIEVER",
    "redistribution": "OSPO_REDISTRIBUTION",
    "max_width": "OSPO_MAX_WIDTH",
    "max_coalitions": "OSPO_MAX_COALITIONS",
    "seed": "OSPO_SEED",
    "clip": "OSPO_CLIP",
    "on_failure": "OSPO_ON_FAILURE",
    "send_reward": "OSPO_SEND_REWARD",
    "timeout_s": "OSPO_TIMEOUT_S",
    "max_retries": "OSPO_MAX_RETRIES",
}
"""``--ospo.<name>`` flag -> environment variable read by :class:`PluginSettings`."""

SETUP_HOOK = "trainer_client.openrlhf_plugin.install"
TRAIN_MODULE = "openrlhf.cli.train_ppo_ray"
ESTIMATOR_FLAG = "--algo.advantage.estimator"


def split_ospo_flags(argv: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """OpenRLHF's arguments, and the ``OSPO_*`` variables from ``--ospo.name value|=value``."""
    rest: list[str] = []
    env: dict[str, str] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--ospo."):
            rest.append(arg)
            i += 1
            continue
        name, has_value, value = arg[len("--ospo.") :].partition("=")
        name = name.replace("-", "_")
        if name not in OSPO_FLAGS:
            known = ", ".join(f"--ospo.{n}" for n in OSPO_FLAGS)
            raise OspoPluginError(f"unknown flag --ospo.{name}; known: {known}")
        if not has_value:
            if i + 1 >= len(argv):
                raise OspoPluginError(f"--ospo.{name} needs a value")
            value = argv[i + 1]
            i += 1
        env[OSPO_FLAGS[name]] = value
        i += 1
    return rest, env


def _flag_value(argv: Sequence[str], flag: str) -> str | None:
    value = None
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(flag + "="):
            value = arg.split("=", 1)[1]
    return value


def runtime_env(ospo_env: Mapping[str, str], environ: Mapping[str, str]) -> dict[str, Any]:
    """Ray runtime_env: OpenRLHF's own three variables, ours, and the setup hook."""
    env_vars = {
        "TOKENIZERS_PARALLELISM": environ.get("TOKENIZERS_PARALLELISM", "true"),
        "NCCL_DEBUG": environ.get("NCCL_DEBUG", "WARN"),
        "RAY_ENABLE_ZERO_COPY_TORCH_TENSORS": environ.get(
            "RAY_ENABLE_ZERO_COPY_TORCH_TENSORS", "1"
        ),
        **ospo_env,
    }
    return {"env_vars": env_vars, "worker_process_setup_hook": SETUP_HOOK}


def _ray_init(env: dict[str, Any]) -> None:
    import ray

    ray.init(runtime_env=env)


def _run_openrlhf(argv: list[str]) -> None:
    sys.argv = [TRAIN_MODULE, *argv]
    runpy.run_module(TRAIN_MODULE, run_name="__main__", alter_sys=True)


def main(
    argv: Sequence[str] | None = None,
    *,
    ray_init: Callable[[dict[str, Any]], None] = _ray_init,
    run: Callable[[list[str]], None] = _run_openrlhf,
) -> int:
    """Check the flags, start Ray with the hook, run OpenRLHF. Returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        train_argv, ospo_env = split_ospo_flags(args)
        estimator = _flag_value(train_argv, ESTIMATOR_FLAG)
        if estimator not in ACCEPTED_ESTIMATORS:
            raise OspoPluginError(
                f"pass {ESTIMATOR_FLAG} with one of {', '.join(ACCEPTED_ESTIMATORS)} "
                f"(got {estimator or 'the default, gae'})"
            )
        merged = {**{k: v for k, v in os.environ.items() if k.startswith("OSPO_")}, **ospo_env}
        PluginSettings.from_env(merged)  # fail here, not in a Ray worker, on bad settings
    except OspoPluginError as exc:
        sys.stderr.write(f"trainer_client.openrlhf_train: {exc}\n")
        return 2
    os.environ.update(ospo_env)
    ray_init(runtime_env(merged, os.environ))
    run(train_argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
