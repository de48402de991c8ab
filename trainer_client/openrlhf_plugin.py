"""OpenRLHF 0.11.x plug-in: per-token OSPO advantages from the service's ``POST /attribute``.

:func:`install` wraps ``RemoteExperienceMaker.compute_advantages_and_returns``. The wrapper
runs the original method (a group estimator: ``group_norm``, ``dr_grpo`` or ``rloo``), then,
for every response row, decodes its tokens at the ``action_mask`` positions
(``sequences[i, 1:][action_mask[i]]``: the mask is shifted by one for next-token
prediction), computes their character offsets, groups rows by prompt
(``index // n_samples_per_prompt``), asks the service for token advantages, and writes them
back exactly at the ``action_mask`` positions (prompt and padding stay 0; ``returns`` gets
the same values, unused without a critic). Per-sample stats go to ``experience.info``.

The core (:func:`build_groups`, :func:`scatter_token_values`, :func:`ospo_token_advantages`)
works on plain tensors and a tokenizer, so it is testable without OpenRLHF. torch and
openrlhf are imported only inside functions: importing this module needs neither.

Settings come from ``OSPO_*`` environment variables (see :class:`PluginSettings`), which
``python -m trainer_client.openrlhf_train`` sets in every Ray worker.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from ._client import AttributionClient
from ._exceptions import OspoClientError
from ._types import UNSET, AttributeResult, Group, Options, Response, Target, UnsetType
from .offsets import token_offsets

__all__ = [
    "ACCEPTED_ESTIMATORS",
    "SUPPORTED_OPENRLHF",
    "OspoPluginError",
    "PluginSettings",
    "Row",
    "build_groups",
    "check_estimator",
    "check_openrlhf_version",
    "install",
    "is_installed",
    "ospo_token_advantages",
    "scatter_token_values",
    "uninstall",
]

logger = logging.getLogger(__name__)

SUPPORTED_OPENRLHF = "0.11"
"""Major.minor of the OpenRLHF releases whose experience maker this plug-in was tested on."""
ACCEPTED_ESTIMATORS = ("group_norm", "dr_grpo", "rloo")
"""Group estimators: they give one scalar per response and skip OpenRLHF's global whitening."""
_ESTIMATOR_BASELINE = {"group_norm": "group_norm", "dr_grpo": "dr_grpo", "rloo": "rloo"}
_WRAPPED_FLAG = "__ospo_wrapped__"

FailureMode = Literal["fail", "fallback"]


class OspoPluginError(RuntimeError):
    """The plug-in cannot work here: wrong OpenRLHF version, estimator, settings or data."""


def _env_int(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError as exc:
        raise OspoPluginError(f"{name}={raw!r} is not an integer") from exc


def _env_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise OspoPluginError(f"{name}={raw!r} is not a number") from exc


def _env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise OspoPluginError(f"{name}={raw!r} is not a boolean (true/false)")


@dataclass(frozen=True)
class PluginSettings:
    """How the plug-in calls the service. Environment variable in brackets.

    url [OSPO_ATTRIBUTE_URL]: service base URL, e.g. ``http://10.0.0.5:8000``.
    api_key [OSPO_API_KEY]; retriever [OSPO_RETRIEVER]; redistribution
    [OSPO_REDISTRIBUTION]: ``prop`` | ``rank`` | ``uniform``; max_width [OSPO_MAX_WIDTH];
    max_coalitions [OSPO_MAX_COALITIONS]; seed [OSPO_SEED]; clip [OSPO_CLIP]: a number or
    ``none`` (unset: service default); on_failure [OSPO_ON_FAILURE]: ``fail`` raises,
    ``fallback`` keeps OpenRLHF's GRPO advantages and logs a warning; send_reward
    [OSPO_SEND_REWARD]: send OpenRLHF's scalar reward so the service's group advantage
    matches the trainer's (else the service computes the retrieval NDCG);
    timeout_s [OSPO_TIMEOUT_S]: read timeout; max_retries [OSPO_MAX_RETRIES].
    """

    url: str
    api_key: str | None = None
    retriever: str | None = None
    redistribution: str | None = None
    max_width: int | None = None
    max_coalitions: int | None = None
    seed: int | None = None
    clip: float | None | UnsetType = UNSET
    on_failure: FailureMode = "fail"
    send_reward: bool = True
    timeout_s: float = 180.0
    max_retries: int = 5
    extra_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.url:
            raise OspoPluginError("no service URL: set OSPO_ATTRIBUTE_URL or --ospo.url")
        if self.on_failure not in ("fail", "fallback"):
            raise OspoPluginError(
                f"on_failure must be 'fail' or 'fallback', not {self.on_failure!r}"
            )
        if self.redistribution not in (None, "prop", "rank", "uniform"):
            raise OspoPluginError(
                f"redistribution must be prop, rank or uniform, not {self.redistribution!r}"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PluginSettings:
        env = os.environ if env is None else env
        clip_raw = env.get("OSPO_CLIP", "").strip().lower()
        clip: float | None | UnsetType = UNSET
        if clip_raw in ("none", "null", "off"):
            clip = None
        elif clip_raw:
            clip = _env_float(env, "OSPO_CLIP", 0.0)
        on_failure = env.get("OSPO_ON_FAILURE", "fail").strip().lower() or "fail"
        if on_failure not in ("fail", "fallback"):
            raise OspoPluginError(f"OSPO_ON_FAILURE must be fail or fallback, not {on_failure!r}")
        retries = _env_int(env, "OSPO_MAX_RETRIES")
        return cls(
            url=env.get("OSPO_ATTRIBUTE_URL", "").strip(),
            api_key=env.get("OSPO_API_KEY") or None,
            retriever=env.get("OSPO_RETRIEVER") or None,
            redistribution=env.get("OSPO_REDISTRIBUTION") or None,
            max_width=_env_int(env, "OSPO_MAX_WIDTH"),
            max_coalitions=_env_int(env, "OSPO_MAX_COALITIONS"),
            seed=_env_int(env, "OSPO_SEED"),
            clip=clip,
            on_failure="fallback" if on_failure == "fallback" else "fail",
            send_reward=_env_bool(env, "OSPO_SEND_REWARD", True),
            timeout_s=_env_float(env, "OSPO_TIMEOUT_S", 180.0),
            max_retries=5 if retries is None else retries,
        )

    def options(self, estimator: str) -> Options:
        """Request options; the baseline follows OpenRLHF's estimator."""
        return Options(
            retriever=self.retriever,
            redistribution=self.redistribution,
            max_width=self.max_width,
            max_coalitions=self.max_coalitions,
            seed=self.seed,
            clip=self.clip,
            baseline=_ESTIMATOR_BASELINE.get(estimator),
        )

    def client(self) -> AttributionClient:
        import httpx

        return AttributionClient(
            self.url,
            api_key=self.api_key,
            timeout=httpx.Timeout(self.timeout_s, connect=10.0),
            max_retries=self.max_retries,
        )


# --------------------------------------------------------------------------- checks


def check_openrlhf_version(version: str | None = None) -> str:
    """The installed OpenRLHF version, or :class:`OspoPluginError` when it is not 0.11.x."""
    if version is None:
        try:
            version = importlib.metadata.version("openrlhf")
        except importlib.metadata.PackageNotFoundError as exc:
            raise OspoPluginError("openrlhf is not installed (the plug-in needs 0.11.x)") from exc
    parts = version.split(".")
    if ".".join(parts[:2]) != SUPPORTED_OPENRLHF:
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


# --------------------------------------------------------------------------- the core


class _Attributor(Protocol):
    def attribute(
        self, groups: Sequence[Group], options: Options | None = None
    ) -> AttributeResult: ...


@dataclass(frozen=True)
class Row:
    """One response row: its sampled token ids (action positions) and metadata."""

    response_ids: tuple[int, ...]
    prompt: str
    label: str
    group: int | str
    reward: float | None = None


def response_ids(sequences: Any, action_mask: Any) -> list[tuple[int, ...]]:
    """Token ids at the action positions of every row: ``sequences[i, 1:][action_mask[i]]``."""
    width = action_mask.shape[1]
    shifted = sequences[:, 1 : 1 + width]
    mask = action_mask.bool()
    return [tuple(int(t) for t in shifted[i][mask[i]].tolist()) for i in range(mask.shape[0])]


def build_groups(rows: Sequence[Row], tokenizer: Any) -> tuple[list[Group], list[tuple[int, int]]]:
    """GRPO groups for ``/attribute`` and, per row, its (group, response) position."""
    order: dict[int | str, int] = {}
    members: list[list[Response]] = []
    labels: list[str] = []
    prompts: list[str] = []
    where: list[tuple[int, int]] = []
    for row in rows:
        offsets = token_offsets(tokenizer, row.response_ids)
        response = Response(text=offsets.text, token_offsets=offsets.offsets, reward=row.reward)
        if row.group not in order:
            order[row.group] = len(members)
            members.append([])
            labels.append(row.label)
            prompts.append(row.prompt)
        g = order[row.group]
        if labels[g] != row.label or prompts[g] != row.prompt:
            raise OspoPluginError(
                f"rows of group {row.group!r} disagree on prompt or label; "
                "is rollout.n_samples_per_prompt right?"
            )
        where.append((g, len(members[g])))
        members[g].append(response)
    groups = [
        Group(
            id=f"group-{key}",
            target=_target(labels[g]),
            responses=members[g],
            pool=_pool(labels[g]),
        )
        for key, g in order.items()
    ]
    return groups, where


def _target(label: str) -> Target:
    try:
        return Target.from_label(label)
    except ValueError as exc:
        raise OspoPluginError(f"label {label[:80]!r}: {exc}") from exc


def _pool(label: str) -> list[str] | None:
    """The candidate pool of a ``{"relevant": {...}, "pool": [...]}`` label (as /reward reads it)."""
    if not label.lstrip().startswith("{"):
        return None
    parsed = json.loads(label)
    pool = parsed.get("pool") if "relevant" in parsed else None
    if pool is None:
        return None
    if not isinstance(pool, list):
        raise OspoPluginError(f"label {label[:80]!r}: 'pool' must be a list of product ids")
    return [str(pid) for pid in pool]


def scatter_token_values(action_mask: Any, values: Sequence[Sequence[float]], like: Any) -> Any:
    """A tensor shaped like ``like`` with row ``i``'s values at its action positions, else 0."""
    import torch

    out = torch.zeros_like(like)
    mask = action_mask.bool()
    for i, row_values in enumerate(values):
        expected = int(mask[i].sum())
        if len(row_values) != expected:
            raise OspoPluginError(
                f"row {i}: {len(row_values)} token advantages for {expected} tokens"
            )
        out[i][mask[i]] = torch.tensor(list(row_values), dtype=out.dtype, device=out.device)
    return out


@dataclass(frozen=True)
class RowOutcome:
    token_advantages: tuple[float, ...] | None  # None: service failed, keep GRPO
    reward: float = 0.0
    advantage: float = 0.0
    segments: int = 0


def attribute_rows(
    rows: Sequence[Row],
    tokenizer: Any,
    client: _Attributor,
    options: Options,
    on_failure: FailureMode,
) -> list[RowOutcome]:
    """Token advantages (aligned with each row's ids) from one batched ``/attribute`` call."""
    if not rows:
        return []
    groups, where = build_groups(rows, tokenizer)
    try:
        result = client.attribute(groups, options)
    except OspoClientError as exc:
        if on_failure == "fail":
            raise
        logger.warning(
            "OSPO service failed (%s); keeping the GRPO advantages for %d responses",
            exc,
            len(rows),
        )
        return [RowOutcome(token_advantages=None) for _ in rows]
    outcomes: list[RowOutcome] = []
    for g, j in where:
        response = result.groups[g].responses[j]
        if response.token_advantages is None:
            raise OspoPluginError("the service returned no token_advantages")
        outcomes.append(
            RowOutcome(
                token_advantages=response.token_advantages,
                reward=response.reward,
                advantage=response.advantage,
                segments=len(response.segments),
            )
        )
    return outcomes


def ospo_token_advantages(
    sequences: Any,
    action_mask: Any,
    prompts: Sequence[str],
    labels: Sequence[str],
    tokenizer: Any,
    scalar_advantages: Any,
    *,
    client: _Attributor,
    options: Options | None = None,
    groups: Sequence[int | str] | None = None,
    rewards: Sequence[float] | None = None,
    on_failure: FailureMode = "fail",
) -> tuple[Any, dict[str, Any]]:
    """Per-token OSPO advantages (B, A) for one right-padded batch, and per-sample info.

    ``scalar_advantages`` (B,) are the trainer's GRPO advantages, broadcast over the action
    positions of a row when the service fails under ``on_failure="fallback"``. ``groups``
    gives each row's GRPO group (default: rows with the same prompt form a group).
    """
    import torch

    ids = response_ids(sequences, action_mask)
    keys = list(groups) if groups is not None else list(prompts)
    rows = [
        Row(
            response_ids=ids[i],
            prompt=prompts[i],
            label=labels[i],
            group=keys[i],
            reward=None if rewards is None else float(rewards[i]),
        )
        for i in range(len(ids))
    ]
    outcomes = attribute_rows(rows, tokenizer, client, options or Options(), on_failure)
    like = torch.zeros(action_mask.shape, dtype=torch.float32, device=action_mask.device)
    values = [
        o.token_advantages
        if o.token_advantages is not None
        else [float(scalar_advantages[i])] * len(ids[i])
        for i, o in enumerate(outcomes)
    ]
    return scatter_token_values(action_mask, values, like), _info(outcomes, like.device)


def _info(outcomes: Sequence[RowOutcome], device: Any) -> dict[str, Any]:
    import torch

    def column(values: list[float]) -> Any:
        return torch.tensor(values, dtype=torch.float32, device=device)

    return {
        "ospo_reward": column([o.reward for o in outcomes]),
        "ospo_advantage": column([o.advantage for o in outcomes]),
        "ospo_segments": column([float(o.segments) for o in outcomes]),
        "ospo_fallback": column([float(o.token_advantages is None) for o in outcomes]),
    }


# --------------------------------------------------------------------------- OpenRLHF glue


@dataclass
class _State:
    settings: PluginSettings | None = None
    client: AttributionClient | None = None
    original: Callable[..., Any] | None = None
    warned_kl: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


_state = _State()


def _client() -> AttributionClient:
    with _state.lock:
        if _state.client is None:
            assert _state.settings is not None
            _state.client = _state.settings.client()
        return _state.client


def _estimator_of(maker: Any) -> str | None:
    args = getattr(getattr(maker, "strategy", None), "args", None)
    try:
        from_args = args.algo.advantage.estimator  # type: ignore[union-attr]
    except AttributeError:
        from_args = None
    own = getattr(maker, "advantage_estimator", None)
    if from_args is not None and own is not None and from_args != own:
        raise OspoPluginError(f"estimator mismatch: args say {from_args}, maker says {own}")
    return from_args if from_args is not None else own


def _apply(
    maker: Any, experiences: Sequence[Any], settings: PluginSettings, estimator: str
) -> None:
    args = maker.strategy.args
    n_samples = int(args.rollout.n_samples_per_prompt)
    kl_coef = float(getattr(getattr(maker, "kl_ctl", None), "value", 0.0) or 0.0)
    if kl_coef and not _state.warned_kl:
        _state.warned_kl = True
        logger.warning(
            "KL-in-reward (coef %s) is replaced by OSPO advantages; use --algo.kl.use_loss", kl_coef
        )

    rows: list[Row] = []
    spans: list[tuple[int, int]] = []
    for experience in experiences:
        ids = response_ids(experience.sequences, experience.action_mask)
        index = experience.index
        rewards = experience.rewards
        start = len(rows)
        for i, row_ids in enumerate(ids):
            group: int | str = (
                int(index[i]) // n_samples if index is not None else experience.prompts[i]
            )
            reward = float(rewards[i]) if (settings.send_reward and rewards is not None) else None
            rows.append(
                Row(
                    response_ids=row_ids,
                    prompt=experience.prompts[i],
                    label=experience.labels[i],
                    group=group,
                    reward=reward,
                )
            )
        spans.append((start, len(rows)))

    outcomes = attribute_rows(
        rows, maker.tokenizer, _client(), settings.options(estimator), settings.on_failure
    )
    for experience, (start, stop) in zip(experiences, spans, strict=True):
        part = outcomes[start:stop]
        if any(o.token_advantages is None for o in part):
            values = [
                o.token_advantages
                if o.token_advantages is not None
                else experience.advantages[i][experience.action_mask[i].bool()].tolist()
                for i, o in enumerate(part)
            ]
        else:
            values = [o.token_advantages for o in part]
        advantages = scatter_token_values(experience.action_mask, values, experience.advantages)
        experience.advantages = advantages
        experience.returns = advantages.clone()
        experience.info.update(_info(part, advantages.device))


def install(settings: PluginSettings | None = None) -> None:
    """Wrap ``RemoteExperienceMaker.compute_advantages_and_returns`` (idempotent).

    Called with no argument as Ray's ``worker_process_setup_hook``: settings then come from
    the ``OSPO_*`` environment. Calling it again only replaces the settings.
    """
    check_openrlhf_version()
    resolved = settings or PluginSettings.from_env()
    from openrlhf.trainer.ppo_utils import experience_maker

    maker_class = experience_maker.RemoteExperienceMaker
    with _state.lock:
        _state.settings = resolved
        _state.client = None
        current = maker_class.compute_advantages_and_returns
        if getattr(current, _WRAPPED_FLAG, False):
            return
        original = current

        @functools.wraps(original)
        def compute_advantages_and_returns(self: Any, experiences: list[Any]) -> list[Any]:
            import torch

            estimator = check_estimator(_estimator_of(self))
            result = original(self, experiences)
            active = _state.settings
            assert active is not None
            with torch.no_grad():
                _apply(self, result, active, estimator)
            return result  # type: ignore[no-any-return]

        setattr(compute_advantages_and_returns, _WRAPPED_FLAG, True)
        maker_class.compute_advantages_and_returns = compute_advantages_and_returns
        _state.original = original
    logger.info(
        "OSPO plug-in installed (service %s, on_failure=%s)", resolved.url, resolved.on_failure
    )


def uninstall() -> None:
    """Restore the original method (tests)."""
    from openrlhf.trainer.ppo_utils import experience_maker

    with _state.lock:
        if _state.original is not None:
            experience_maker.RemoteExperienceMaker.compute_advantages_and_returns = _state.original
        if _state.client is not None:
            _state.client.close()
        _state.original = None
        _state.client = None
        _state.settings = None


def is_installed() -> bool:
    from openrlhf.trainer.ppo_utils import experience_maker

    method = experience_maker.RemoteExperienceMaker.compute_advantages_and_returns
    return bool(getattr(method, _WRAPPED_FLAG, False))
