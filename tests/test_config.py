"""service/config.py: Settings from the environment and the config file's retrievers."""

from __future__ import annotations

import json

import pytest

from service.config import ConfigError, Settings, load_settings


def test_settings_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("OSPO_PORT", "9001")
    monkeypatch.setenv("REDIS_URL", "redis://example:6379/3")
    monkeypatch.setenv("OSPO_API_KEY", "k3y")
    monkeypatch.setenv("OSPO_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("OSPO_MAX_GROUPS", "7")
    loaded = load_settings(host="0.0.0.0", port=None)
    assert loaded.port == 9001 and loaded.host == "0.0.0.0"
    assert loaded.redis_url == "redis://example:6379/3"
    assert loaded.api_key is not None and loaded.api_key.get_secret_value() == "k3y"
    assert "k3y" not in repr(loaded)
    assert loaded.data_dir == tmp_path and loaded.max_groups == 7
    monkeypatch.delenv("REDIS_URL")
    monkeypatch.setenv("OSPO_REDIS_URL", "redis://other:1/0")
    assert Settings().redis_url == "redis://other:1/0"


def test_default_retriever_spec():
    (spec,) = Settings(config_file=None).retriever_specs()
    assert (spec.name, spec.catalog, spec.index_type) == ("default", "demo", "flat")


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_config_file_lists_retrievers(tmp_path, suffix):
    entries = [
        {"name": "default", "encoder": "minilm", "catalog": "demo", "index_type": "flat"},
        {
            "name": "mpnet",
            "encoder": "all-mpnet-base-v2",
            "catalog": "bundles/shop",
            "index": "hnsw",
        },
    ]
    path = tmp_path / f"retrievers{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps({"retrievers": entries}))
    else:
        path.write_text(
            "".join(
                "[[retrievers]]\n" + "".join(f'{k} = "{v}"\n' for k, v in entry.items())
                for entry in entries
            )
        )
    specs = Settings(config_file=path).retriever_specs()
    assert [s.name for s in specs] == ["default", "mpnet"]
    assert specs[1].index_type == "hnsw" and specs[1].catalog == str(tmp_path / "bundles" / "shop")
    assert specs[0].catalog == "demo"


def test_bad_config_files_fail_clearly(tmp_path):
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="cannot read"):
        Settings(config_file=missing).retriever_specs()
    broken = tmp_path / "broken.toml"
    broken.write_text("[[retrievers]\n")
    with pytest.raises(ConfigError, match="not valid"):
        Settings(config_file=broken).retriever_specs()
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"retrievers": [{"name": "a", "colour": "red"}]}))
    with pytest.raises(ConfigError, match="colour"):
        Settings(config_file=unknown).retriever_specs()
    twice = tmp_path / "twice.json"
    twice.write_text(json.dumps([{"name": "a"}, {"name": "a"}]))
    with pytest.raises(ConfigError, match="twice"):
        Settings(config_file=twice).retriever_specs()
