"""`python -m experiments.train --policy smollm2`: SmolLM2-135M-Instruct + LoRA, a short real-LM run (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from experiments.train.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def policy() -> object:
    pytest.importorskip("peft")
    from experiments.train.policy_smollm2 import ModelPackageMissing, SmolLM2Config, SmolLM2Policy

    try:
        return SmolLM2Policy(SmolLM2Config(max_new_tokens=16))
    except ModelPackageMissing as exc:
        pytest.skip(str(exc))


def test_offsets_cover_the_decoded_text_and_log_probs_match(policy: object) -> None:
    from experiments.train.policy_smollm2 import SmolLM2Policy

    assert isinstance(policy, SmolLM2Policy)
    rollouts = policy.sample(
        ["a warm jacket for my wife, in navy"], 2, torch.Generator().manual_seed(0)
    )
    for rollout in rollouts:
        assert len(rollout.token_offsets) == rollout.length
        pieces = "".join(rollout.text[a:b] for a, b in rollout.token_offsets)
        assert pieces == "".join(rollout.text.split())  # every visible character, once, in order
        eos = [i for i, t in enumerate(rollout.token_ids.tolist()) if t in policy.eos_ids]
        assert all(rollout.token_offsets[i][0] == rollout.token_offsets[i][1] for i in eos)
    with torch.no_grad():
        recomputed = policy.log_probs(rollouts)
    for rollout, values in zip(rollouts, recomputed, strict=True):
        torch.testing.assert_close(values, rollout.old_log_probs, atol=2e-3, rtol=0)


def test_a_short_smollm2_run_completes(service_url: str, tmp_path: Path) -> None:
    args = [
        "--policy", "smollm2", "--advantage", "ospo-prop", "--steps", "2",
        "--group-size", "4", "--prompts-per-step", "1", "--max-new-tokens", "24",
        "--eval-queries", "2", "--url", service_url, "--out", str(tmp_path), "--no-progress",
    ]  # fmt: skip
    assert main(args) == 0
    summary = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    assert summary["policy"] == "smollm2"
    rows = (tmp_path / "metrics.csv").read_text(encoding="utf-8").splitlines()
    assert len(rows) == 1 + 3
