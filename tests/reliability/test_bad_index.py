"""A missing, truncated or mismatched index: `ospo serve` refuses to start, exits non-zero and
says so in one clear line naming the file and the problem (no traceback for an operator to
dig through)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support import service_process as svc


def _missing(index: Path) -> tuple[str, str, str]:
    (index / "index.faiss").unlink()
    return "", str(index / "index.faiss"), "missing"


def _truncated(index: Path) -> tuple[str, str, str]:
    data = (index / "index.faiss").read_bytes()
    (index / "index.faiss").write_bytes(data[: len(data) // 3])
    return "", str(index / "index.faiss"), "truncated"


def _mismatched(index: Path) -> tuple[str, str, str]:
    # Same catalog, but the retriever is configured with another encoder than the manifest's.
    return 'encoder = "hash:384"\n', str(index), "encoder"


CASES: dict[str, Callable[[Path], tuple[str, str, str]]] = {
    "missing": _missing,
    "truncated": _truncated,
    "mismatched-encoder": _mismatched,
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_index_refuses_to_start(
    case: str, demo_index: Path, service_data_dir: Path, tmp_path: Path
) -> None:
    index = tmp_path / "index"
    shutil.copytree(demo_index, index)
    extra, named_path, problem = CASES[case](index)
    config = tmp_path / "retrievers.toml"
    config.write_text(
        f'[[retrievers]]\nname = "default"\ncatalog = "demo"\nindex_dir = "{index}"\n{extra}',
        encoding="utf-8",
    )
    port = svc.free_port()
    done = svc.run_ospo(
        ["serve", "--host", "127.0.0.1", "--port", str(port), "--config", str(config)],
        service_data_dir,
        timeout_s=300,
    )
    stderr = done.stderr
    assert done.returncode != 0, f"ospo serve started on a {case} index:\n{stderr[-2000:]}"
    naming = [line for line in stderr.splitlines() if named_path in line and problem in line]
    assert naming, f"no line names {named_path} and '{problem}':\n{stderr[-3000:]}"
    assert "Traceback" not in stderr, (
        f"the refusal should be one clear line, not a traceback:\n{stderr[-3000:]}"
    )
    # The last line an operator sees is the reason.
    last = stderr.strip().splitlines()[-1]
    assert named_path in last and problem in last, f"last stderr line: {last!r}"
