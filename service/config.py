"""Service settings: environment variables (`OSPO_*`, plus `REDIS_URL`) and an optional
config file (TOML or JSON) listing `retrievers` and `reward_models`. Nothing is read at import
time: call `load_settings()` or build `Settings(...)` where the app or the CLI starts."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser from PyPI (a dependency there)
    import tomli as tomllib

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.errors import InvalidRequest

if TYPE_CHECKING:
    from service.retrieval.registry import RetrieverSpec
    from service.rewardmodel.spec import RewardModelSpec

_SPEC_FIELDS = (
    "name",
    "encoder",
    "catalog",
    "index_type",
    "index",
    "index_dir",
    "kind",
    "backend",
    "remote_url",
    "remote_model",
    "remote_batch_size",
    "remote_timeout_s",
    "remote_retries",
    "remote_concurrency",
    "remote_api_key_env",
)
_CATALOG_KINDS = ("esci", "wands", "hm")


class ConfigError(InvalidRequest):
    """The retrievers config file is missing or malformed."""

    code = "config_error"


class Settings(BaseSettings):
    """Every knob of the service; the table in docs/DESIGN.md lists them with their env vars."""

    model_config = SettingsConfigDict(
        env_prefix="OSPO_", populate_by_name=True, extra="ignore", frozen=True
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    config_file: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("OSPO_CONFIG", "OSPO_CONFIG_FILE"),
    )
    data_dir: Path = Path("~/.cache/ospo").expanduser()
    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("REDIS_URL", "OSPO_REDIS_URL")
    )
    api_key: SecretStr | None = None
    log_level: str = "INFO"

    cache_ttl_s: int = Field(default=604800, ge=1)
    cache_memory_items: int = Field(default=200000, ge=1)
    redis_timeout_s: float = Field(default=0.25, gt=0)
    redis_retry_interval_s: float = Field(default=2.0, ge=0)

    max_groups: int = Field(default=64, ge=1)
    max_responses: int = Field(default=64, ge=1)
    # The attributed query (or the whole attributed text of a reward-model target) ...
    max_text_chars: int = Field(default=8000, ge=1)
    # ... and the whole response, reasoning included: a long reasoning rollout with a short
    # answer costs no more than its answer, so its bound is much larger.
    max_response_chars: int = Field(default=64000, ge=1)
    max_token_offsets: int = Field(default=16384, ge=1)
    max_coalitions_limit: int = Field(default=512, ge=2)
    max_k: int = Field(default=10000, ge=1)
    max_depth: int = Field(default=10000, ge=1)
    max_shapley_segments: int = Field(default=12, ge=1)
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)

    max_inflight: int = Field(default=4, ge=1)
    max_queue: int = Field(default=64, ge=0)
    retry_after_s: float = Field(default=1.0, gt=0)

    # Partial queries are short and vary in length: small batches waste less on padding
    # (32 encodes them ~1.7x faster than 256 on 2 CPU cores; docs/BENCHMARKS.md).
    encode_batch_size: int = Field(default=32, ge=1)
    batch_window_ms: float = Field(default=2.0, ge=0)
    warmup: bool = True
    # CPU threads for torch and faiss; unset = their defaults (all cores). Set it to the cores
    # the service really has to itself: next to a busy trainer, oversubscribed intra-op threads
    # make MiniLM encoding many times slower (docs/BENCHMARKS.md).
    cpu_threads: int | None = Field(default=None, ge=1)

    @field_validator("data_dir", "config_file", mode="after")
    @classmethod
    def _expand_home(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser()

    def retriever_specs(self) -> list[RetrieverSpec]:
        """The retrievers to host: those of `config_file`, else one `default` retriever
        (the packaged MiniLM over the demo catalog, flat index)."""
        from service.retrieval.registry import RetrieverSpec

        if self.config_file is None:
            return [RetrieverSpec()]
        entries = read_retriever_entries(self.config_file)
        if not entries:  # a file with reward models only keeps the default retriever
            return [RetrieverSpec()]
        return [RetrieverSpec.from_mapping(entry) for entry in entries]

    def reward_model_specs(self) -> list[RewardModelSpec]:
        """The reward models of `config_file` (`[[reward_models]]`); none without a file."""
        if self.config_file is None:
            return []
        return read_reward_model_specs(self.config_file)


def read_config_document(path: Path) -> Any:
    """The parsed TOML (or, for a .json file, JSON) config file."""
    path = Path(path).expanduser()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read config file {path}: {exc.strerror}", field="config"
        ) from exc
    try:
        return json.loads(raw) if path.suffix.lower() == ".json" else tomllib.loads(raw.decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid: {exc}", field="config") from exc


def read_retriever_entries(path: Path) -> list[dict[str, Any]]:
    """The `retrievers` entries of a TOML or JSON config file, with relative catalog and
    index paths resolved against the file's directory. A file that lists `reward_models`
    but no `retrievers` gives no entries."""
    path = Path(path).expanduser()
    document = read_config_document(path)
    entries = document.get("retrievers") if isinstance(document, dict) else document
    if entries is None and isinstance(document, dict) and "reward_models" in document:
        return []
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"config file {path} lists no retrievers", field="retrievers")
    resolved: list[dict[str, Any]] = []
    names: set[str] = set()
    for position, entry in enumerate(entries):
        field = f"retrievers[{position}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{path}: {field} is not a table", field=field)
        unknown = sorted(set(entry) - set(_SPEC_FIELDS))
        if unknown:
            raise ConfigError(f"{path}: {field} has unknown keys {unknown}", field=field)
        item = dict(entry)
        for key in ("catalog", "index_dir"):
            value = item.get(key)
            if isinstance(value, str) and value != "demo":
                item[key] = _resolve_source(value, path.parent)
        name = str(item.get("name", "default"))
        if name in names:
            raise ConfigError(f"{path}: retriever name {name!r} is used twice", field=field)
        names.add(name)
        resolved.append(item)
    return resolved


def read_reward_model_specs(path: Path) -> list[RewardModelSpec]:
    """The `reward_models` entries of a config file as specs (a relative `model` path that
    exists next to the file is resolved against the file's directory)."""
    from service.rewardmodel.spec import RewardModelSpec

    path = Path(path).expanduser()
    document = read_config_document(path)
    entries = document.get("reward_models", []) if isinstance(document, dict) else []
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: reward_models must be a list of tables", field="reward_models")
    specs: list[RewardModelSpec] = []
    names: set[str] = set()
    for position, entry in enumerate(entries):
        field = f"reward_models[{position}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{path}: {field} is not a table", field=field)
        item = dict(entry)
        model = item.get("model")
        if isinstance(model, str) and model and (path.parent / model).expanduser().exists():
            item["model"] = str((path.parent / model).expanduser().resolve())
        try:
            spec = RewardModelSpec.from_mapping(item)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{path}: {field}: {exc}", field=field) from exc
        if spec.name in names:
            raise ConfigError(f"{path}: reward model name {spec.name!r} is used twice", field=field)
        names.add(spec.name)
        specs.append(spec)
    return specs


def _resolve_source(value: str, base: Path) -> str:
    """A catalog or index path relative to the config file's directory ("esci:DIR" keeps its
    prefix)."""
    kind, sep, rest = value.partition(":")
    prefix = ""
    if sep and kind in _CATALOG_KINDS:
        prefix, value = f"{kind}:", rest
    candidate = Path(value).expanduser()
    if not candidate.is_absolute():
        candidate = (base / candidate).resolve()
    return prefix + str(candidate)


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with explicit overrides (e.g. CLI flags) on top."""
    return Settings(**{key: value for key, value in overrides.items() if value is not None})


__all__ = [
    "ConfigError",
    "Settings",
    "load_settings",
    "read_config_document",
    "read_retriever_entries",
    "read_reward_model_specs",
]
