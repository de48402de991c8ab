"""service/cli/index.py: `ospo index build` writes an index with its manifest."""

from __future__ import annotations

import json

from service.cli import main


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


def test_cli_index_build_bm25_and_backend_flags(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OSPO_DATA_DIR", str(tmp_path / "data"))
    out = tmp_path / "bm25"
    assert main(["index", "build", "--catalog", "demo", "--index", "bm25", "--out", str(out)]) == 0
    from service.retrieval.index import MANIFEST_FILE

    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert manifest["index_type"] == "bm25"
    from service.cli import build_parser

    args = build_parser().parse_args(
        ["index", "build", "--catalog", "demo", "--backend", "onnx-int8", "--out", "x"]
    )
    assert args.backend == "onnx-int8"
