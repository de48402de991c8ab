"""What the OpenRLHF plug-in accepts: its settings (``--ospo.*`` flags = ``OSPO_*`` variables)
and the OpenRLHF configurations it refuses, each with one line saying why.

The refusals are one function over a lookup of OpenRLHF's hierarchical argument names, so
the launcher (reading the command line before Ray starts) and the patched method (reading
``strategy.args`` inside the trainer actor) refuse exactly the same configurations.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import math
import os
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .._adapter_types import AdapterError, AdapterSettings, FailurePolicy
from .._types import Options

__all__ = [
    "ACCEPTED_ESTIMATORS",
    "ESTIMATOR_BASELINE",
    "OPENRLHF_DEFAULTS",
    "OSPO_FLAGS",
    "SUPPORTED_OPENRLHF",
    "OspoPluginError",
    "PluginSettings",
    "check_estimator",
    "check_openrlhf_version",
    "REWARD_URL_PARAMS",
    "refusals",
    "reward_url_conflicts",
]

OspoPluginError = AdapterError
"""The plug-in cannot work here (its historical name; the adapter core's error)."""

SUPPORTED_OPENRLHF = "0.11"
"""Major.minor of the OpenRLHF releases whose experience maker this plug-in was tested on."""
ACCEPTED_ESTIMATORS = ("group_norm", "dr_grpo", "rloo")
"""Group estimators: one scalar per response, and OpenRLHF skips its global whitening."""
ESTIMATOR_BASELINE: Mapping[str, str] = {e: e for e in ACCEPTED_ESTIMATORS}

OPENRLHF_DEFAULTS: Mapping[str, Any] = {
    "algo.advantage.estimator": "gae",
    "actor.policy_loss_type": "ppo",
    "algo.kl.use_loss": False,
    "algo.kl.init_coef": 0.01,
    "train.agent_func_path": None,
    "data.label_key": None,
    "reward.remote_url": None,
}
"""The defaults of ``train_ppo_ray.py`` 0.11.2 for the arguments the refusals read."""

OSPO_FLAGS: Mapping[str, str] = {
    "url": "OSPO_ATTRIBUTE_URL",
    "api_key": "OSPO_API_KEY",
    "retriever": "OSPO_RETRIEVER",
    "k": "OSPO_K",
    "segmenter": "OSPO_SEGMENTER",
    "estimator": "OSPO_ESTIMATOR",
    "redistribution": "OSPO_REDISTRIBUTION",
    "credit": "OSPO_CREDIT",
    "negative": "OSPO_NEGATIVE",
    "max_width": "OSPO_MAX_WIDTH",
    "max_coalitions": "OSPO_MAX_COALITIONS",
    "query_tag": "OSPO_QUERY_TAG",
    "depth": "OSPO_DEPTH",
    "seed": "OSPO_SEED",
    "clip": "OSPO_CLIP",
    "reward_model": "OSPO_REWARD_MODEL",
    "send_reward": "OSPO_SEND_REWARD",
    "on_failure": "OSPO_ON_FAILURE",
    "retry_budget_s": "OSPO_RETRY_BUDGET_S",
    "timeout_s": "OSPO_TIMEOUT_S",
    "max_retries": "OSPO_MAX_RETRIES",
    "max_consecutive_fallbacks": "OSPO_MAX_CONSECUTIVE_FALLBACKS",
    "max_groups_per_request": "OSPO_MAX_GROUPS_PER_REQUEST",
    "ship_package": "OSPO_SHIP_PACKAGE",
}
"""``--ospo.<name>`` flag of the launcher -> the environment variable the workers read."""

_OPTION_NAMES = (
    "retriever",
    "k",
    "segmenter",
    "estimator",
    "redistribution",
    "credit",
    "negative",
    "max_width",
    "max_coalitions",
    "query_tag",
    "depth",
)


@dataclass(frozen=True)
class PluginSettings:
    """The plug-in's settings, one per ``--ospo.<name>`` flag (see :data:`OSPO_FLAGS`).

    Service and request: ``url``, ``api_key``, and the request options ``retriever``, ``k``,
    ``segmenter``, ``estimator``, ``redistribution``, ``credit``, ``negative``,
    ``max_width``, ``max_coalitions``, ``query_tag``, ``depth`` (``None``: the service
    default). ``seed``: base seed (step ``s`` sends ``seed + s``). ``clip``: clip over the
    whole step, ×std(Â) (``None``: off). ``reward_model``: score against that reward model
    of the service instead of the labels' catalog targets. ``send_reward``: send OpenRLHF's
    scalar rewards. Failure policy (docs/TRAINERS.md): ``on_failure``, ``retry_budget_s``,
    ``timeout_s``, ``max_retries``, ``max_consecutive_fallbacks``. ``ship_package``: the
    launcher ships ``trainer_client`` to the Ray workers (``runtime_env.py_modules``).
    """

    url: str
    api_key: str | None = None
    retriever: str | None = None
    k: int | None = None
    segmenter: str | None = None
    estimator: str | None = None
    redistribution: str | None = None
    credit: str | None = None
    negative: str | None = None
    max_width: int | None = None
    max_coalitions: int | None = None
    query_tag: str | None = None
    depth: int | None = None
    seed: int = 0
    clip: float | None = None
    reward_model: str | None = None
    send_reward: bool = True
    on_failure: Literal["fallback", "fail"] = "fallback"
    retry_budget_s: float = 600.0
    timeout_s: float = 180.0
    max_retries: int | None = None
    max_consecutive_fallbacks: int = 3
    max_groups_per_request: int = 64
    ship_package: bool = True

    def __post_init__(self) -> None:
        if not self.url:
            raise OspoPluginError("no service URL: set OSPO_ATTRIBUTE_URL or --ospo.url")
        if self.redistribution not in (None, "prop", "rank", "uniform"):
            raise OspoPluginError(
                f"redistribution must be prop, rank or uniform, not {self.redistribution!r}"
            )
        self.adapter_settings()  # the failure policy and clip validate themselves

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PluginSettings:
        """Settings from the ``OSPO_*`` variables (unset or empty: the default)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        for name, var in OSPO_FLAGS.items():
            raw = env.get(var, "").strip()
            if name == "url":
                values["url"] = raw
            elif raw:
                values[name] = _convert(var, raw, str(types[name]))
        return cls(**values)

    def options(self, estimator: str | None = None) -> Options:
        """The request options; the baseline follows OpenRLHF's estimator."""
        given = {name: getattr(self, name) for name in _OPTION_NAMES}
        return Options(
            **given,
            baseline=ESTIMATOR_BASELINE.get(estimator or ""),
            seed=self.seed,
            clip=self.clip,
        )

    def adapter_settings(self, estimator: str | None = None) -> AdapterSettings:
        return AdapterSettings(
            url=self.url,
            api_key=self.api_key,
            options=self.options(estimator),
            seed=self.seed,
            clip=self.clip,
            reward_model=self.reward_model,
            send_reward=self.send_reward,
            failure=FailurePolicy(
                on_failure=self.on_failure,
                retry_budget_s=self.retry_budget_s,
                timeout_s=self.timeout_s,
                max_retries=self.max_retries,
                max_consecutive_fallbacks=self.max_consecutive_fallbacks,
            ),
            max_groups_per_request=self.max_groups_per_request,
        )


def _convert(var: str, raw: str, kind: str) -> Any:
    lowered = raw.lower()
    if kind.startswith("float") and "None" in kind and lowered in ("none", "null", "off"):
        return None
    if kind.startswith("bool"):
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise OspoPluginError(f"{var}={raw!r} is not a boolean (true/false)")
    if kind.startswith("int"):
        try:
            return int(raw)
        except ValueError as exc:
            raise OspoPluginError(f"{var}={raw!r} is not an integer") from exc
    if kind.startswith("float"):
        try:
            value = float(raw)
        except ValueError as exc:
            raise OspoPluginError(f"{var}={raw!r} is not a number") from exc
        if not math.isfinite(value):
            raise OspoPluginError(f"{var}={raw!r} is not a finite number")
        return value
    if kind.startswith("Literal"):
        return lowered
    return raw


# --------------------------------------------------------------------------- refusals


def check_openrlhf_version(version: str | None = None) -> str:
    """The installed OpenRLHF version, or :class:`OspoPluginError` when it is not 0.11.x
    (read from the package metadata: nothing is imported)."""
    if version is None:
        try:
            version = importlib.metadata.version("openrlhf")
        except importlib.metadata.PackageNotFoundError as exc:
            raise OspoPluginError("openrlhf is not installed (the plug-in needs 0.11.x)") from exc
    if ".".join(version.split(".")[:2]) != SUPPORTED_OPENRLHF:
        raise OspoPluginError(
            f"openrlhf {version} is installed; the OSPO plug-in supports only "
            f"{SUPPORTED_OPENRLHF}.x (pip install 'openrlhf=={SUPPORTED_OPENRLHF}.2')"
        )
    return version


def check_estimator(estimator: str | None) -> str:
    """The estimator, or :class:`OspoPluginError` unless it is a group estimator."""
    if estimator not in ACCEPTED_ESTIMATORS:
        hint = " (GAE needs a critic; OSPO replaces the advantages)" if estimator == "gae" else ""
        raise OspoPluginError(
            f"--algo.advantage.estimator {estimator} is not supported by the OSPO plug-in"
            f"{hint}; use one of {', '.join(ACCEPTED_ESTIMATORS)}"
        )
    return estimator


def refusals(get: Callable[[str], Any], settings: PluginSettings | None = None) -> list[str]:
    """One line per OpenRLHF setting the plug-in cannot honour. ``get(name)`` reads an
    argument by its hierarchical name (``"algo.kl.use_loss"``), or its 0.11.2 default."""
    found: list[str] = []
    try:
        check_estimator(get("algo.advantage.estimator"))
    except OspoPluginError as exc:
        found.append(str(exc))
    if get("actor.policy_loss_type") == "gspo":
        found.append(
            "--actor.policy_loss_type gspo is refused: its sequence-level ratio sees only the "
            "mean token advantage (Â), which cancels OSPO's redistribution; use ppo"
        )
    if not get("algo.kl.use_loss") and float(get("algo.kl.init_coef") or 0.0) > 0:
        found.append(
            "KL in the reward is refused (--algo.kl.init_coef > 0 without --algo.kl.use_loss): "
            "OSPO replaces the advantages the penalty is folded into, so it would be dropped; "
            "add --algo.kl.use_loss (or --algo.kl.init_coef 0)"
        )
    if get("train.agent_func_path"):
        found.append(
            "agent mode (--train.agent_func_path) is refused: a multi-turn response mixes "
            "environment tokens into the action mask, and OSPO credits one generated query"
        )
    reward_model = settings is not None and settings.reward_model is not None
    if not reward_model and not get("data.label_key"):
        found.append(
            "--data.label_key is required: each prompt's label (a catalog query id or graded "
            "labels) is the target OSPO scores against"
        )
    if settings is not None:
        found.extend(reward_url_conflicts(get("reward.remote_url"), settings))
    return found


REWARD_URL_PARAMS: Mapping[str, str] = {
    "retriever": "default",
    "k": "1000",
    "depth": "1000",
    "query_tag": "answer",
}
"""The ``/reward`` query parameters that define the retrieval game, and the service defaults."""


def reward_url_conflicts(urls: Any, settings: PluginSettings) -> list[str]:
    """Lines for each ospo ``/reward`` URL whose game (retriever, k, depth, query tag) differs
    from the plug-in's: the scalar reward and the coalition values would be different games."""
    if not urls or urls == "agent":
        return []
    found: list[str] = []
    for url in _split_urls(urls):
        params = reward_url_params(url)
        if params is None:
            continue
        for name, default in REWARD_URL_PARAMS.items():
            ours = getattr(settings, name)
            want = default if ours is None else str(ours)
            have = params.get(name, default)
            if have != want:
                found.append(
                    f"--reward.remote_url {url} scores with {name}={have} but --ospo.{name} is "
                    f"{want}; give both the same (add {name}={want} to the URL)"
                )
    return found


def reward_url_params(url: str) -> dict[str, str] | None:
    """The query parameters of an ospo ``/reward`` URL (``None`` for any other URL)."""
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.path.rstrip("/").endswith("/reward"):
        return None
    return dict(urllib.parse.parse_qsl(parts.query))


def _split_urls(urls: str | Sequence[str]) -> list[str]:
    if isinstance(urls, str):
        return [u for u in urls.split(",") if u.strip()]
    return [str(u) for u in urls]
