"""The TRL example of docs/TRAINERS.md, run as written (a fresh interpreter) on a tiny randomly
initialised model saved to disk, for one step against the real service."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow
if os.environ.get("CI", "").lower() == "true":
    import trl  # noqa: F401  (CI installs the TRL stack: a missing one is a failure)
else:
    pytest.importorskip("trl", reason="trl 1.16 is not installed (make install)")

DOCS = Path(__file__).resolve().parents[3] / "docs" / "TRAINERS.md"


def example() -> str:
    text = DOCS.read_text()
    found = re.search(r"<!-- trl-example:[^>]*-->\n```python\n(.*?)\n```", text, re.S)
    assert found, "docs/TRAINERS.md lost its TRL example block"
    return found.group(1)


def test_the_documented_trl_example_trains(
    live_service: str, llm_tokenizer: Any, tmp_path: Path
) -> None:
    from .conftest import tiny_model

    model_dir = tmp_path / "tiny"
    tiny_model(llm_tokenizer).save_pretrained(str(model_dir))
    llm_tokenizer.save_pretrained(str(model_dir))
    script = tmp_path / "train_ospo_trl.py"
    script.write_text(example())
    environ = {
        **os.environ,
        "OSPO_URL": live_service,
        "MODEL": str(model_dir),
        "STEPS": "1",
        "MAX_COMPLETION_LENGTH": "12",
        "OMP_NUM_THREADS": "1",
    }
    done = subprocess.run(
        [sys.executable, "-W", "ignore", str(script)],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "'ospo/groups': '1'" in done.stdout, done.stdout[-2000:]
