"""service/cli/__init__.py: the `ospo` parser, one-line operator errors, and a --help that
loads no model stack."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from service.cli import SUBCOMMANDS, build_parser, main, serve


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
