"""What the verl plug-in accepts: the ``algorithm.ospo`` config section and the verl settings
it refuses, each with one line saying why. Plain Python over mappings: no verl import.

``algorithm.ospo`` (added with Hydra's ``+``: ``+algorithm.ospo.url=http://ospo:8000``):

- ``url`` (required), ``api_key`` (default: the ``OSPO_API_KEY`` environment variable);
- request options, each left to the service when unset: ``retriever``, ``k``, ``depth``,
  ``segmenter``, ``estimator``, ``redistribution``, ``credit``, ``negative``,
  ``max_width``, ``max_coalitions``, ``query_tag``, ``sampler``, ``outside``, ``cache``;
- ``seed`` (base seed: step ``s`` sends ``seed + s``), ``clip`` (clip over the whole step,
  ×std(Â); unset: off), ``reward_model`` (a reward model of the service as every group's
  target), ``send_reward`` (send verl's scalar rewards; default true);
- the failure policy: ``on_failure``, ``retry_budget_s``, ``timeout_s``, ``max_retries``,
  ``max_consecutive_fallbacks``; ``max_groups_per_request``, ``max_concurrency``;
- ``label_field``: where each row's label lives in the dataset row, a dotted path
  (default ``reward_model.ground_truth``, verl's own convention; e.g. ``extra_info.label``).

``algorithm.norm_adv_by_std_in_grpo`` picks the group baseline (true: ``group_norm``, as
verl's GRPO; false: ``dr_grpo``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any

from .._adapter_types import AdapterError, AdapterSettings, FailurePolicy
from .._types import Options

__all__ = [
    "DEFAULT_LABEL_FIELD",
    "ESTIMATOR",
    "TRAINER_MODES",
    "OspoVerlSettings",
    "baseline",
    "refusals",
    "settings_from_config",
]

ESTIMATOR = "ospo"
"""The ``algorithm.adv_estimator`` name registered with verl's ``register_adv_est``."""
TRAINER_MODES: Mapping[str, str] = {
    "ospo_sync": "sync",
    "ospo_colocate_async": "colocate_async",
    "ospo_separate_async": "separate_async",
}
"""``trainer.v1.trainer_mode`` of each OSPO trainer -> the verl mode it extends."""
DEFAULT_LABEL_FIELD = "reward_model.ground_truth"

_ADAPTER_KEYS = (
    "url",
    "api_key",
    "seed",
    "clip",
    "reward_model",
    "send_reward",
    "max_groups_per_request",
    "max_concurrency",
)
_FAILURE_KEYS = tuple(f.name for f in dataclasses.fields(FailurePolicy))
# The adapter core sets errors, seed and clip on every request; the baseline follows verl.
_OPTION_KEYS = tuple(
    f.name
    for f in dataclasses.fields(Options)
    if f.name not in ("errors", "seed", "clip", "baseline", "explain")
)
_KNOWN = (*_ADAPTER_KEYS, *_FAILURE_KEYS, *_OPTION_KEYS, "label_field")


@dataclasses.dataclass(frozen=True)
class OspoVerlSettings:
    """The adapter core's settings and where the label lives."""

    adapter: AdapterSettings
    label_field: tuple[str, ...]


def settings_from_config(section: Mapping[str, Any] | None) -> OspoVerlSettings:
    """Settings from ``algorithm.ospo`` (a plain mapping); :class:`AdapterError` names an
    unknown key, a missing URL or a bad value."""
    values = dict(section or {})
    unknown = sorted(set(values) - set(_KNOWN))
    if unknown:
        raise AdapterError(
            f"unknown key(s) algorithm.ospo.{', algorithm.ospo.'.join(unknown)}; "
            f"known: {', '.join(_KNOWN)}"
        )
    if not values.get("url"):
        raise AdapterError(
            "algorithm.ospo.url is required (the OSPO service, reachable from the node that "
            "runs verl's TaskRunner): add +algorithm.ospo.url=http://HOST:8000"
        )
    label_field = str(values.pop("label_field", None) or DEFAULT_LABEL_FIELD)
    options = {k: values.pop(k) for k in _OPTION_KEYS if values.get(k) is not None}
    failure = {k: values.pop(k) for k in _FAILURE_KEYS if values.get(k) is not None}
    adapter = {k: v for k, v in values.items() if v is not None}
    adapter.setdefault("api_key", os.environ.get("OSPO_API_KEY") or None)
    try:
        settings = AdapterSettings(
            options=Options(**options), failure=FailurePolicy(**failure), **adapter
        )
    except (TypeError, ValueError) as exc:
        raise AdapterError(f"algorithm.ospo: {exc}") from exc
    return OspoVerlSettings(adapter=settings, label_field=tuple(label_field.split(".")))


def baseline(algorithm: Mapping[str, Any]) -> str:
    """The service's group baseline for verl's ``norm_adv_by_std_in_grpo``."""
    return "group_norm" if algorithm.get("norm_adv_by_std_in_grpo", True) else "dr_grpo"


def refusals(get: Callable[[str], Any]) -> list[str]:
    """One line per verl setting the OSPO trainers cannot honour; ``get(name)`` reads a
    dotted config key (``"algorithm.use_kl_in_reward"``), ``None`` when absent."""
    found: list[str] = []
    estimator = get("algorithm.adv_estimator")
    if estimator != ESTIMATOR:
        found.append(
            f"algorithm.adv_estimator={estimator} with an OSPO trainer mode: set "
            f"algorithm.adv_estimator={ESTIMATOR} (or use verl's own trainer_mode)"
        )
    if get("algorithm.use_kl_in_reward"):
        found.append(
            "algorithm.use_kl_in_reward=True is refused: OSPO replaces the advantages the "
            "per-token KL penalty is folded into, so it would be dropped; use "
            "actor_rollout_ref.actor.use_kl_loss=True instead"
        )
    if get("actor_rollout_ref.actor.policy_loss.loss_mode") == "geo_mean":
        found.append(
            "actor_rollout_ref.actor.policy_loss.loss_mode=geo_mean is refused: it averages "
            "the advantages of a response into one (verl: 'only sequence level advantage'), "
            "which cancels OSPO's redistribution"
        )
    if get("actor_rollout_ref.rollout.multi_turn.enable"):
        found.append(
            "actor_rollout_ref.rollout.multi_turn.enable=True is refused: a multi-turn "
            "response interleaves tool output, and OSPO credits one generated query"
        )
    try:
        settings_from_config(get("algorithm.ospo"))
    except AdapterError as exc:
        found.append(str(exc))
    return found
