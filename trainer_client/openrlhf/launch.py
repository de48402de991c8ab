"""Launch OpenRLHF's ``train_ppo_ray`` with the OSPO plug-in installed in every Ray worker.

Usage (``python -m trainer_client.openrlhf_train`` is the same entry)::

    python -m trainer_client.openrlhf.launch <usual train_ppo_ray flags> \\
        --ospo.url http://SERVICE:8000 [--ospo.redistribution prop] [--ospo.on_failure fallback] ...

Before Ray starts, the launcher refuses what the plug-in cannot honour (one line each:
estimator, gspo, KL in the reward, agent mode, a missing ``--data.label_key``, bad
``--ospo.*`` values) and makes ``--reward.remote_url`` score on the same game as
``/attribute`` (it adds ``retriever=``, ``k=``, ``depth=``, ``query_tag=`` to an ospo
``/reward`` URL, or refuses one that names others). Then it starts Ray with a ``runtime_env`` holding OpenRLHF's own three
variables, the ``OSPO_*`` settings, the setup hook, and (unless ``--ospo.ship_package
false``) ``py_modules`` with this package, so workers import it whether or not it is
installed on their node; and it runs ``openrlhf.cli.train_ppo_ray`` as ``__main__`` (its
argument parsing lives under ``if __name__ == "__main__"``). OpenRLHF calls ``ray.init``
only when Ray is not initialised yet, so ours, made first, wins.
"""

from __future__ import annotations

import os
import runpy
import sys
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .settings import (
    OPENRLHF_DEFAULTS,
    OSPO_FLAGS,
    REWARD_URL_PARAMS,
    OspoPluginError,
    PluginSettings,
    refusals,
    reward_url_params,
)

__all__ = ["SETUP_HOOK", "align_reward_urls", "main", "runtime_env", "split_ospo_flags"]

SETUP_HOOK = "trainer_client.openrlhf_plugin.install"
"""The hook Ray runs in every worker (the historical path; ``openrlhf_plugin`` is a light shim)."""
TRAIN_MODULE = "openrlhf.cli.train_ppo_ray"
REWARD_URL_FLAG = "--reward.remote_url"


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


def flag_getter(argv: Sequence[str]) -> Callable[[str], Any]:
    """Read an OpenRLHF argument from the command line by its hierarchical name: its last
    value, ``True`` for a flag given without one, else the 0.11.2 default."""

    def get(name: str) -> Any:
        flag = "--" + name
        value: Any = OPENRLHF_DEFAULTS.get(name)
        for i, arg in enumerate(argv):
            if arg == flag:
                following = argv[i + 1] if i + 1 < len(argv) else None
                value = True if following is None or following.startswith("--") else following
            elif arg.startswith(flag + "="):
                value = arg.split("=", 1)[1]
        if name == "algo.kl.init_coef" and isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                return value
        return value

    return get


def align_reward_urls(
    argv: Sequence[str], settings: PluginSettings
) -> tuple[list[str], dict[str, str]]:
    """``argv`` with the plug-in's game parameters (retriever, k, depth, query tag) added to
    every ospo ``/reward`` URL that does not name them, and the ``OSPO_*`` variables that
    adopt a URL's parameters when the ``--ospo`` flags leave them unset. Conflicts are left
    for :func:`refusals` to report."""
    out = list(argv)
    adopted: dict[str, str] = {}
    for i, arg in enumerate(out):
        if arg == REWARD_URL_FLAG and i + 1 < len(out):
            position, raw = i + 1, out[i + 1]
        elif arg.startswith(REWARD_URL_FLAG + "="):
            position, raw = i, arg.split("=", 1)[1]
        else:
            continue
        urls = []
        for url in raw.split(","):
            params = reward_url_params(url)
            if params is not None:
                for name in REWARD_URL_PARAMS:
                    value = getattr(settings, name)
                    if name in params and value is None:
                        adopted[OSPO_FLAGS[name]] = params[name]
                    elif name not in params and value is not None:
                        url = _add_param(url, name, str(value))
            urls.append(url)
        joined = ",".join(urls)
        out[position] = joined if position != i else f"{REWARD_URL_FLAG}={joined}"
    return out, adopted


def _add_param(url: str, name: str, value: str) -> str:
    parts = urllib.parse.urlsplit(url.strip())
    query = urllib.parse.parse_qsl(parts.query) + [(name, value)]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def runtime_env(
    ospo_env: Mapping[str, str], environ: Mapping[str, str], *, ship_package: bool = True
) -> dict[str, Any]:
    """Ray runtime_env: OpenRLHF's own three variables, ours, the setup hook, and this
    package as ``py_modules`` (Ray puts it on every worker's path before the hook runs)."""
    env_vars = {
        "TOKENIZERS_PARALLELISM": environ.get("TOKENIZERS_PARALLELISM", "true"),
        "NCCL_DEBUG": environ.get("NCCL_DEBUG", "WARN"),
        "RAY_ENABLE_ZERO_COPY_TORCH_TENSORS": environ.get(
            "RAY_ENABLE_ZERO_COPY_TORCH_TENSORS", "1"
        ),
        **ospo_env,
    }
    env: dict[str, Any] = {"env_vars": env_vars, "worker_process_setup_hook": SETUP_HOOK}
    if ship_package:
        env["py_modules"] = [str(Path(__file__).resolve().parent.parent)]
        env["excludes"] = ["__pycache__/"]
    return env


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
        merged = {**{k: v for k, v in os.environ.items() if k.startswith("OSPO_")}, **ospo_env}
        settings = PluginSettings.from_env(merged)  # here, not in a Ray worker, on bad values
        train_argv, adopted = align_reward_urls(train_argv, settings)
        merged.update(adopted)
        settings = PluginSettings.from_env(merged)
        problems = refusals(flag_getter(train_argv), settings)
        if problems:
            raise OspoPluginError("\n  ".join(["cannot start:", *problems]))
    except OspoPluginError as exc:
        sys.stderr.write(f"trainer_client.openrlhf_train: {exc}\n")
        return 2
    os.environ.update({key: merged[key] for key in merged if key.startswith("OSPO_")})
    ray_init(runtime_env(merged, os.environ, ship_package=settings.ship_package))
    run(train_argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
