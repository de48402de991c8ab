"""Import OpenRLHF 0.11.2 modules on a CPU machine: openrlhf is installed without flash-attn
and vLLM, so its trainer modules import only with tiny stand-ins for those two packages
(openrlhf-integration.md §4). The stand-ins live in sys.modules only while the import runs.

A plain module (no pytest): conftest.py loads it by path, and so do the subprocess and Ray
worker tests, which need the same imports in another process.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

EXPERIENCE_MAKER = "openrlhf.trainer.ppo_utils.experience_maker"
SAMPLES_GENERATOR = "openrlhf.trainer.ppo_utils.samples_generator"


def _stub(name: str, **attrs: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    for key, value in attrs.items():
        setattr(module, key, value)
    return module


def _unavailable(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("flash-attn / vLLM stand-in called: not available on CPU")


def import_experience_maker() -> types.ModuleType:
    """openrlhf.trainer.ppo_utils.experience_maker, imported with flash_attn/vllm stand-ins."""
    return import_with_stubs(EXPERIENCE_MAKER)


def import_with_stubs(name: str) -> types.ModuleType:
    """An openrlhf module, imported with flash_attn/vllm stand-ins."""
    if name in sys.modules:
        return sys.modules[name]
    # The real packages first: transformers probes find_spec("flash_attn"), which a stand-in
    # without __spec__ would break.
    importlib.import_module("transformers.modeling_utils")
    importlib.import_module("peft")
    importlib.import_module("deepspeed")
    stubs = {
        "flash_attn": _stub("flash_attn"),
        "flash_attn.bert_padding": _stub(
            "flash_attn.bert_padding",
            index_first_axis=_unavailable,
            pad_input=_unavailable,
            rearrange=_unavailable,
            unpad_input=_unavailable,
        ),
        "flash_attn.utils": _stub("flash_attn.utils"),
        "flash_attn.utils.distributed": _stub(
            "flash_attn.utils.distributed", all_gather=_unavailable
        ),
        "vllm": _stub("vllm", SamplingParams=_unavailable),
        "vllm.inputs": _stub("vllm.inputs", TokensPrompt=_unavailable),
        "vllm.utils": _stub("vllm.utils", random_uuid=_unavailable),
    }
    added = [key for key in stubs if key not in sys.modules]
    for key in added:
        sys.modules[key] = stubs[key]
    try:
        return importlib.import_module(name)
    finally:
        for key in added:
            sys.modules.pop(key, None)
