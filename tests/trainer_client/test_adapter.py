"""The adapter core and its failure policy, against a stand-in service over real HTTP: for a
service that refuses, stalls, answers 5xx then recovers, answers 401, or fails one group, the
step's outcome is the documented one (docs/TRAINERS.md, "Failure policy")."""

from __future__ import annotations

import math
import time
from typing import Any

import pytest

import trainer_client as tc
from trainer_client.adapter import (
    AdapterError,
    AdapterSettings,
    FailurePolicy,
    OspoAdapter,
    Rollout,
    StepResult,
    TooManyFallbacks,
    scatter_advantages,
)


def rollouts(n_groups: int = 2, size: int = 2, labels: list[Any] | None = None) -> list[Rollout]:
    """n_groups x size rollouts; rollout text "g{g} r{r}" has 2 tokens (+ an empty EOS span)."""
    out = []
    for g in range(n_groups):
        for r in range(size):
            out.append(
                Rollout(
                    group=g,
                    label=(labels or [f"q{i}" for i in range(n_groups)])[g],
                    text=f"g{g} r{r}",
                    token_offsets=((0, 2), (3, 5), (5, 5)),
                    prompt=f"prompt {g}",
                    reward=float(r),
                )
            )
    return out


def adapter_for(url: str, *, clip: float | None = None, **failure: Any) -> OspoAdapter:
    failure.setdefault("retry_budget_s", 2.0)
    failure.setdefault("timeout_s", 0.5)
    policy = FailurePolicy(**failure)
    return OspoAdapter(AdapterSettings(url=url, seed=100, clip=clip, failure=policy))


def test_a_healthy_step_sends_one_request_with_group_errors_and_the_step_seed(standin):
    adapter = adapter_for(standin.url)
    result = adapter.step(rollouts(), step=7, baseline="dr_grpo")
    (body,) = standin.bodies
    assert body["options"] == {"errors": "group", "seed": 107, "clip": None, "baseline": "dr_grpo"}
    assert [g["target"] for g in body["groups"]] == [{"query_id": "q0"}, {"query_id": "q1"}]
    assert [r["reward"] for g in body["groups"] for r in g["responses"]] == [0.0, 1.0] * 2
    assert result.outcome == "ospo" and result.step == 7 and result.reason is None
    assert [row.token_advantages for row in result.rows] == [
        (-1.0, -2.0, -3.0),
        (1.0, 2.0, 3.0),
        (-2.0, -4.0, -6.0),
        (2.0, 4.0, 6.0),
    ]
    assert result.metrics["ospo/fallback_groups"] == 0.0
    assert result.metrics["ospo/fallback_step"] == 0.0
    assert result.metrics["ospo/service_ms"] > 0.0
    assert result.metrics["ospo/mean_abs_adv"] == pytest.approx(3.0)
    # the seed follows the step; without a step the adapter counts its calls
    adapter.step(rollouts(), step=8)
    adapter.step(rollouts())
    assert [b["options"]["seed"] for b in standin.bodies] == [107, 108, 102]
    adapter.close()


def test_refused_connection_retries_for_the_budget_then_falls_back(dead_url):
    adapter = adapter_for(dead_url, retry_budget_s=1.0)
    started = time.monotonic()
    result = adapter.step(rollouts())
    elapsed = time.monotonic() - started
    # retried with backoff (0.25-0.5 s, then 0.5-1 s, ...) while the next wait still ended
    # within the 1 s budget, and never past it
    assert 0.2 <= elapsed < 1.5
    assert result.outcome == "fallback" and all(row.fallback for row in result.rows)
    assert result.reason is not None and "ConnectError" in result.reason
    assert result.metrics["ospo/fallback_step"] == 1.0
    assert result.metrics["ospo/fallback_groups"] == 2.0
    assert adapter.consecutive_fallbacks == 1


def test_refused_connection_under_fail_raises_the_client_error(dead_url):
    adapter = adapter_for(dead_url, retry_budget_s=0.5, on_failure="fail")
    with pytest.raises(tc.ConnectError):
        adapter.step(rollouts())


def test_a_stalled_service_cannot_hold_the_step_past_its_budget(standin):
    standin.script.extend([("stall", 5.0)] * 10)
    adapter = adapter_for(standin.url, retry_budget_s=1.0, timeout_s=0.4)
    started = time.monotonic()
    result = adapter.step(rollouts())
    elapsed = time.monotonic() - started
    assert elapsed < 2.5  # not 5 s per attempt, and not several attempts of 0.4 s past 1 s
    assert result.outcome == "fallback" and "ReadTimeout" in (result.reason or "")
    assert len(standin.bodies) >= 2  # it did retry within the budget


def test_5xx_then_recovery_gives_ospo_advantages(standin):
    standin.script.extend(
        [
            ("status", 503, {"Retry-After": "0"}, {"code": "overloaded", "message": "busy"}),
            ("status", 500, None, None),
            ("status", 429, {"Retry-After": "0"}, None),
        ]
    )
    adapter = adapter_for(standin.url, retry_budget_s=10.0)
    result = adapter.step(rollouts())
    assert result.outcome == "ospo" and len(standin.bodies) == 4
    assert not any(row.fallback for row in result.rows)
    assert adapter.consecutive_fallbacks == 0


def test_5xx_past_the_budget_falls_back(standin):
    standin.script.extend([("status", 502, None, None)] * 100)
    adapter = adapter_for(standin.url, retry_budget_s=0.6)
    result = adapter.step(rollouts())
    assert result.outcome == "fallback" and "502" in (result.reason or "")


@pytest.mark.parametrize("on_failure", ["fallback", "fail"])
@pytest.mark.parametrize(
    ("code", "exc_type"),
    [(401, tc.AuthenticationError), (422, tc.ClientRequestError), (404, tc.ClientRequestError)],
)
def test_4xx_raises_at_once_with_the_service_message_whatever_the_fallback(
    standin, on_failure, code, exc_type
):
    error = {"code": "unauthorized", "message": "wrong API key", "field": "authorization"}
    standin.script.append(("status", code, None, error))
    adapter = adapter_for(standin.url, on_failure=on_failure)
    started = time.monotonic()
    with pytest.raises(exc_type) as info:
        adapter.step(rollouts())
    assert time.monotonic() - started < 1.0 and len(standin.bodies) == 1  # no retry
    assert "wrong API key" in str(info.value) and info.value.status == code


def test_one_group_error_falls_back_for_that_group_only(standin, caplog):
    standin.script.append(("group_error", {1}, "unknown_query"))
    adapter = adapter_for(standin.url)
    with caplog.at_level("WARNING", logger="trainer_client.adapter"):
        result = adapter.step(rollouts(3), step=0)
    assert result.outcome == "partial"
    assert [row.fallback for row in result.rows] == [False, False, True, True, False, False]
    error = result.rows[2].error
    assert error is not None and error.code == "unknown_query" and "cannot score" in error.message
    assert result.errors == {1: error}
    assert result.metrics["ospo/fallback_groups"] == 1.0
    assert result.metrics["ospo/fallback_step"] == 0.0
    assert adapter.consecutive_fallbacks == 0  # a partial step is not a fallback step
    assert "unknown_query" in caplog.text and "cannot score" in caplog.text


def test_more_than_n_consecutive_fallback_steps_stop_the_run(standin, dead_url):
    adapter = adapter_for(dead_url, retry_budget_s=0.2, max_consecutive_fallbacks=2)
    assert adapter.step(rollouts()).outcome == "fallback"
    assert adapter.step(rollouts()).outcome == "fallback"
    with pytest.raises(TooManyFallbacks, match="3 consecutive training steps") as info:
        adapter.step(rollouts())
    assert "max_consecutive_fallbacks=2" in str(info.value)
    # a scored step in between resets the count
    healthy = adapter_for(standin.url, max_consecutive_fallbacks=1)
    standin.script.append(("group_error", {0}, "x"))
    assert healthy.step(rollouts(2)).outcome == "partial"
    standin.script.append(("group_error", {0}, "x"))
    assert healthy.step(rollouts(1)).outcome == "fallback"  # every group failed
    assert healthy.step(rollouts(1)).outcome == "ospo"
    assert healthy.consecutive_fallbacks == 0


def test_malformed_labels_fall_back_locally_and_count(standin):
    adapter = adapter_for(standin.url, max_consecutive_fallbacks=0)
    result = adapter.step(rollouts(2, labels=[{"P1": -1}, "q1"]))
    assert result.outcome == "partial"
    assert [g["target"] for g in standin.bodies[0]["groups"]] == [{"query_id": "q1"}]
    error = result.errors[0]
    assert error.code == "invalid_label" and error.field == "labels[0]"
    with pytest.raises(TooManyFallbacks, match="invalid_label"):
        adapter.step(rollouts(1, labels=[None]))  # nothing to send: a fallback step
    assert len(standin.bodies) == 1


def test_labels_give_targets_and_pools(standin):
    labels = [
        '{"query_id": "q0", "pool": ["P1", "P2"]}',
        {"relevant": {"P3": 2}, "pool": ["P3", "P4"]},
        17,
    ]
    adapter_for(standin.url).step(rollouts(3, labels=labels))
    sent = standin.bodies[0]["groups"]
    assert [(g["target"], g.get("pool")) for g in sent] == [
        ({"query_id": "q0"}, ["P1", "P2"]),
        ({"relevant": {"P3": 2.0}}, ["P3", "P4"]),
        ({"query_id": "17"}, None),
    ]


def test_reward_model_targets_carry_the_prompt_and_label(standin):
    settings = AdapterSettings(url=standin.url, reward_model="sentiment", send_reward=False)
    OspoAdapter(settings).step(rollouts(2, labels=[{"tone": "warm"}, None]))
    sent = standin.bodies[0]["groups"]
    assert sent[0]["target"] == {"reward_model": "sentiment", "label": '{"tone": "warm"}'}
    assert sent[1]["target"] == {"reward_model": "sentiment"}
    assert [g["prompt"] for g in sent] == ["prompt 0", "prompt 1"]
    assert all("reward" not in r for g in sent for r in g["responses"])


def test_rows_of_a_group_must_agree():
    bad = rollouts(1)
    bad[1] = Rollout(0, "other", "t", ((0, 1),))
    with pytest.raises(AdapterError, match="disagree"):
        OspoAdapter(AdapterSettings(url="http://unused")).step(bad)


@pytest.mark.parametrize("max_groups", [1, 64])
def test_clipping_is_over_the_whole_step_and_skips_plain_responses(standin, max_groups):
    items = rollouts(3)
    items[0] = Rollout(0, "q0", "uniform r0", ((0, 7), (8, 10)), "prompt 0", 0.0)
    settings = AdapterSettings(url=standin.url, clip=1.0, max_groups_per_request=max_groups)
    result = OspoAdapter(settings).step(items)
    assert all(b["options"]["clip"] is None for b in standin.bodies)  # never clipped per chunk
    assert len(standin.bodies) == (3 if max_groups == 1 else 1)
    # Â = ±0.5 for every response: std 0.5, bound 0.5
    assert result.metrics["ospo/clip_bound"] == pytest.approx(0.5)
    assert result.rows[0].token_advantages == (-1.0, -2.0)  # not redistributed: untouched
    for row in result.rows[1:]:
        assert row.token_advantages is not None
        assert max(abs(a) for a in row.token_advantages) == pytest.approx(0.5)


def test_results_survive_pickling_for_a_broadcast(standin):
    import pickle

    standin.script.append(("group_error", {0}, "unknown_query"))
    result = adapter_for(standin.url).step(rollouts())
    assert pickle.loads(pickle.dumps(result)) == result


def test_rollouts_from_token_ids(minilm_tokenizer):
    ids = minilm_tokenizer("<answer>red boots</answer>", add_special_tokens=False)["input_ids"]
    ids = [*ids, minilm_tokenizer.sep_token_id]
    rollout = Rollout.from_token_ids(minilm_tokenizer, ids, group=3, label="q", prompt="p")
    assert rollout.text == tc.token_offsets(minilm_tokenizer, ids).text
    assert (
        len(rollout.token_offsets) == len(ids)
        and rollout.token_offsets[-1][0] == rollout.token_offsets[-1][1]
    )


def test_scatter_advantages_writes_scored_rows_and_keeps_fallback_rows():
    torch = pytest.importorskip("torch")
    from trainer_client.adapter import RowResult

    result = StepResult(
        rows=(RowResult((1.0, 2.0)), RowResult(None), RowResult((3.0,))),
        outcome="partial",
        step=0,
        metrics={},
    )
    # TRL/verl layout: each row's tokens first, right padding after
    positions = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 0, 0]], dtype=torch.bool)
    own = torch.full((3, 3), 9.0)
    out = scatter_advantages(result, positions, own)
    assert out.tolist() == [[1.0, 2.0, 0.0], [9.0, 9.0, 9.0], [3.0, 0.0, 0.0]]
    with pytest.raises(AdapterError, match="row 0"):
        scatter_advantages(result, torch.ones(3, 3, dtype=torch.bool), own)
    assert not math.isnan(out.sum().item())


def test_settings_are_checked():
    with pytest.raises(AdapterError):
        FailurePolicy(on_failure="ignore")  # type: ignore[arg-type]
    with pytest.raises(AdapterError):
        FailurePolicy(retry_budget_s=0)
    with pytest.raises(AdapterError):
        AdapterSettings(url="http://x", clip=0.0)
    with pytest.raises(AdapterError, match="no service URL"):
        AdapterSettings().client()
    client = AdapterSettings(url="http://x").client()
    assert client.retry.max_elapsed_s == 600.0 and client.retry.max_retries is None
    client.close()
