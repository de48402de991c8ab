"""Reward-model specs and the `[[reward_models]]` config: validation that names the key, the
score mapping (the paper's clip((r + 5) / 15, 0, 1) for bounds [-5, 10]), and config files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.config import ConfigError, Settings
from service.rewardmodel import RewardModelSpec, score_to_value


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=20))
def test_paper_bounds_map_like_clip_r_plus_5_over_15(scores):
    mapped = score_to_value(np.asarray(scores), (-5.0, 10.0))
    expected = [min(max((r + 5) / 15, 0.0), 1.0) for r in scores]
    assert mapped.tolist() == pytest.approx(expected, abs=1e-12)
    order = np.argsort(scores, kind="stable")
    assert np.all(np.diff(mapped[order]) >= 0)  # monotone


def test_no_bounds_keeps_raw_scores():
    raw = np.asarray([-7.5, 0.0, 12.0])
    assert score_to_value(raw, None).tolist() == raw.tolist()


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ({"name": "a"}, "exactly one"),
        ({"name": "a", "url": "http://x", "model": "m"}, "exactly one"),
        ({"name": "a", "url": "ftp://x"}, "http"),
        ({"name": "a", "url": "http://x", "batch_size": 0}, "batch_size"),
        ({"name": "a", "url": "http://x", "timeout_s": 0}, "timeout_s"),
        ({"name": "a", "url": "http://x", "retries": -1}, "retries"),
        ({"name": "a", "url": "http://x", "score_bounds": [10, -5]}, "score_bounds"),
        ({"name": "a", "url": "http://x", "score_bounds": [1]}, "score_bounds"),
        ({"name": "a", "url": "http://x", "empty_value": "one"}, "empty_value"),
        ({"name": "a", "url": "http://x", "colour": "red"}, "colour"),
        ({"url": "http://x"}, "name"),
    ],
)
def test_bad_specs_name_the_key(entry, fragment):
    with pytest.raises(ValueError) as info:
        RewardModelSpec.from_mapping(entry)
    assert fragment in str(info.value)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ospo.toml"
    path.write_text(text)
    return path


def test_config_file_with_reward_models(tmp_path):
    (tmp_path / "rm").mkdir()
    path = write(
        tmp_path,
        """
[[reward_models]]
name = "sentiment"
url = "http://127.0.0.1:9000/score"
batch_size = 32
timeout_s = 10
retries = 1
score_bounds = [-5, 10]
empty_value = "zero"
version = "v3"

[[reward_models]]
name = "local"
model = "rm"
""",
    )
    settings = Settings(config_file=path)
    remote, local = settings.reward_model_specs()
    assert remote.backend == "remote" and remote.score_bounds == (-5.0, 10.0)
    assert (remote.batch_size, remote.timeout_s, remote.retries) == (32, 10.0, 1)
    assert remote.empty_value == "zero" and remote.version == "v3"
    assert local.backend == "hf" and local.model == str((tmp_path / "rm").resolve())
    # Reward models only: the default retriever is still hosted.
    (retriever,) = settings.retriever_specs()
    assert retriever.name == "default"


def test_config_errors_name_the_entry(tmp_path):
    path = write(tmp_path, '[[reward_models]]\nname = "a"\nurl = "http://x"\nretries = -2\n')
    with pytest.raises(ConfigError) as info:
        Settings(config_file=path).reward_model_specs()
    assert info.value.field == "reward_models[0]" and "retries" in info.value.message
    twice = '[[reward_models]]\nname = "a"\nurl = "http://x"\n' * 2
    with pytest.raises(ConfigError) as info:
        Settings(config_file=write(tmp_path, twice)).reward_model_specs()
    assert "used twice" in info.value.message


def test_no_config_file_means_no_reward_models():
    assert Settings(config_file=None).reward_model_specs() == []


def test_retrievers_only_config_has_no_reward_models(tmp_path):
    path = write(tmp_path, '[[retrievers]]\nname = "r"\n')
    assert Settings(config_file=path).reward_model_specs() == []
    assert [s.name for s in Settings(config_file=path).retriever_specs()] == ["r"]
