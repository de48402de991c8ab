"""RewardModelSpec: one `[[reward_models]]` entry of the service config file, and the mapping
of a raw reward-model score to a coalition value.

A spec names either a remote reward model (`url`, OpenRLHF's remote protocol) or an
in-process Hugging Face sequence-classification model (`model`, a hub name or a local path).
Validation errors are ValueErrors naming the key; `service.config` adds the file and entry.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

EMPTY_VALUES = ("score", "zero")
DEFAULT_REMOTE_VERSION = "unversioned"


@dataclass(frozen=True)
class RewardModelSpec:
    """How to reach one reward model and how to turn its scores into coalition values.

    - `url` | `model`: exactly one. `url` is POSTed OpenRLHF's `{"query", "prompts",
      "labels"}`; `model` is loaded with AutoModelForSequenceClassification (first logit).
    - `version`: part of every cache key; bump it when the model behind the name changes.
      Unset: "unversioned" for a URL, a hash of the model's config (and local weight files)
      for an in-process model.
    - `score_bounds` = [lo, hi]: values are clip((r - lo) / (hi - lo), 0, 1) (the paper's
      clip((r + 5) / 15, 0, 1) is [-5, 10]); unset: raw scores.
    - `empty_value`: "score" evaluates v(∅) as the score of the prompt with an empty
      response; "zero" fixes v(∅) = 0.
    """

    name: str
    url: str | None = None
    model: str | None = None
    version: str | None = None
    batch_size: int = 64
    timeout_s: float = 30.0
    retries: int = 2
    concurrency: int = 4
    score_bounds: tuple[float, float] | None = None
    empty_value: str = "score"
    device: str | None = None
    max_length: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError("name must be a non-empty string")
        if (self.url is None) == (self.model is None):
            raise ValueError("give exactly one of 'url' (remote) or 'model' (in-process)")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url {self.url!r} must start with http:// or https://")
        if self.model is not None and not self.model.strip():
            raise ValueError("model must be a non-empty name or path")
        if self.version is not None and not self.version:
            raise ValueError("version must be a non-empty string")
        _check_int("batch_size", self.batch_size, 1)
        _check_int("retries", self.retries, 0)
        _check_int("concurrency", self.concurrency, 1)
        if self.max_length is not None:
            _check_int("max_length", self.max_length, 1)
        if (
            isinstance(self.timeout_s, bool)
            or not isinstance(self.timeout_s, int | float)
            or not math.isfinite(self.timeout_s)
            or self.timeout_s <= 0
        ):
            raise ValueError(f"timeout_s must be a positive number, not {self.timeout_s!r}")
        if self.empty_value not in EMPTY_VALUES:
            raise ValueError(
                f"empty_value must be one of {', '.join(EMPTY_VALUES)}, not {self.empty_value!r}"
            )
        if self.score_bounds is not None:
            low, high = self.score_bounds
            if not (math.isfinite(low) and math.isfinite(high) and low < high):
                raise ValueError(
                    f"score_bounds must be [low, high] with low < high, not {list(self.score_bounds)}"
                )

    @property
    def backend(self) -> str:
        """ "remote" (url) or "hf" (in-process model)."""
        return "remote" if self.url is not None else "hf"

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> RewardModelSpec:
        """A spec from one config-file table; ValueError naming the first bad key."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(unknown)}")
        if "name" not in data:
            raise ValueError("name is missing")
        values = {key: value for key, value in data.items() if value is not None}
        for key in ("name", "url", "model", "version", "empty_value", "device"):
            if key in values and not isinstance(values[key], str):
                raise ValueError(f"{key} must be a string, not {values[key]!r}")
        if "timeout_s" in values:
            values["timeout_s"] = _number("timeout_s", values["timeout_s"])
        if "score_bounds" in values:
            bounds = values["score_bounds"]
            if not isinstance(bounds, list | tuple) or len(bounds) != 2:
                raise ValueError(f"score_bounds must be [low, high], not {bounds!r}")
            values["score_bounds"] = (
                _number("score_bounds", bounds[0]),
                _number("score_bounds", bounds[1]),
            )
        return cls(**values)


def _check_int(key: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{key} must be an integer >= {minimum}, not {value!r}")


def _number(key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key} must be a number, not {value!r}")
    return float(value)


def score_to_value(raw: np.ndarray, bounds: tuple[float, float] | None) -> np.ndarray:
    """Raw reward-model scores as coalition values: clip((r - lo) / (hi - lo), 0, 1) with
    bounds, the raw scores (as float64) without."""
    scores = np.asarray(raw, dtype=np.float64)
    if bounds is None:
        return scores
    low, high = bounds
    mapped: np.ndarray = np.clip((scores - low) / (high - low), 0.0, 1.0)
    return mapped


__all__ = [
    "DEFAULT_REMOTE_VERSION",
    "EMPTY_VALUES",
    "RewardModelSpec",
    "score_to_value",
]
