"""Request limits (property-based offsets checks), settings from env and config files, and
the `ospo` command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.cli import SUBCOMMANDS, build_parser, main, serve
from service.config import ConfigError, Settings, load_settings
from service.engine.limits import Limits, check_group, validate_request
from service.errors import InvalidRequest
from service.schemas import AttributeRequest


def request_with(text: str, offsets: list[tuple[int, int]]) -> AttributeRequest:
    return AttributeRequest.model_validate(
        {
            "groups": [
                {
                    "target": {"query_id": "q"},
                    "responses": [{"text": text, "token_offsets": offsets}],
                }
            ]
        }
    )


def offsets_are_valid(text: str, offsets: list[tuple[int, int]]) -> bool:
    end_so_far = 0
    for start, end in offsets:
        if start > end or end > len(text):
            return False
        if start == end:
            continue
        if start < end_so_far:
            return False
        end_so_far = end
    return True


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(max_size=30),
    offsets=st.lists(st.tuples(st.integers(0, 35), st.integers(0, 35)), max_size=8),
)
def test_offsets_are_accepted_exactly_when_sorted_disjoint_and_inside(text, offsets):
    request = request_with(text, offsets)
    validate_request(request, Limits())  # request-wide checks; offsets are a group's
    if offsets_are_valid(text, offsets):
        check_group(0, request.groups[0], Limits())
    else:
        with pytest.raises(InvalidRequest) as info:
            check_group(0, request.groups[0], Limits())
        assert info.value.field.startswith("groups[0].responses[0].token_offsets[")


def test_word_offsets_of_any_text_are_valid():
    import re

    text = "<answer>red   boots, size 8</answer>\u00e9\U0001f600"
    offsets = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)] + [
        (0, 0),
        (len(text), len(text)),
    ]
    request = request_with(text, offsets)
    validate_request(request, Limits())
    check_group(0, request.groups[0], Limits())


def test_defaults_fit_stricter_limits_but_explicit_values_do_not():
    request = AttributeRequest.model_validate(
        {"groups": [{"target": {"query_id": "q"}, "responses": [{"text": "a"}]}]}
    )
    validate_request(request, Limits(max_k=100, max_coalitions_limit=50))
    assert request.options.k == 100 and request.options.max_coalitions == 50
    explicit = AttributeRequest.model_validate(
        {
            "groups": [{"target": {"query_id": "q"}, "responses": [{"text": "a"}]}],
            "options": {"k": 1000},
        }
    )
    with pytest.raises(InvalidRequest, match="max_k=100"):
        validate_request(explicit, Limits(max_k=100))


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


def test_cli_parses_serve_and_index_build():
    parser = build_parser()
    args = parser.parse_args(["serve", "--host", "0.0.0.0", "--port", "9000", "--config", "r.toml"])
    assert (args.host, args.port, args.config) == ("0.0.0.0", 9000, "r.toml")
    args = parser.parse_args(
        [
            "index",
            "build",
            "--catalog",
            "demo",
            "--encoder",
            "hash:64",
            "--index",
            "hnsw",
            "--out",
            "x",
        ]
    )
    assert (args.catalog, args.encoder, args.index, args.out) == ("demo", "hash:64", "hnsw", "x")
    with pytest.raises(SystemExit):
        parser.parse_args(["index", "build", "--catalog", "demo", "--index", "lsh", "--out", "x"])
    assert SUBCOMMANDS[0] is serve


def test_cli_index_build_writes_an_index(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OSPO_DATA_DIR", str(tmp_path / "data"))
    out = tmp_path / "index"
    assert (
        main(["index", "build", "--catalog", "demo", "--encoder", "hash:64", "--out", str(out)])
        == 0
    )
    from service.retrieval.index import MANIFEST_FILE

    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert "flat" in capsys.readouterr().out
    assert manifest["encoder"] == "hash:64" and manifest["index_type"] == "flat"


def test_cli_reports_operator_errors_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OSPO_DATA_DIR", str(tmp_path))
    code = main(
        [
            "index",
            "build",
            "--catalog",
            str(tmp_path / "missing"),
            "--encoder",
            "hash:64",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("ospo: error:") and err.count("\n") == 1


def test_ospo_help_is_fast_and_imports_no_model_stack():
    code = (
        "import sys, io, contextlib\n"
        "from service.cli import main\n"
        "buf = io.StringIO()\n"
        "with contextlib.redirect_stdout(buf):\n"
        "    try: main(['--help'])\n"
        "    except SystemExit: pass\n"
        "assert 'serve' in buf.getvalue() and 'index' in buf.getvalue()\n"
        "heavy = [m for m in ('torch', 'faiss', 'fastapi', 'sentence_transformers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run(
        [sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2]
    )


def test_cpu_threads_setting_caps_torch_and_faiss(monkeypatch) -> None:
    import faiss
    import torch

    from service.engine.services import set_cpu_threads
    from service.config import Settings

    monkeypatch.setenv("OSPO_CPU_THREADS", "1")
    assert Settings().cpu_threads == 1
    before = torch.get_num_threads()
    try:
        set_cpu_threads(1)
        assert torch.get_num_threads() == 1
        assert faiss.omp_get_max_threads() == 1
    finally:
        torch.set_num_threads(before)
        faiss.omp_set_num_threads(before)
