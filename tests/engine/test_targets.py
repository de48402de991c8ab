"""service/engine/targets.py: what a partial text is scored against. Equal labels, pools and
prompts give equal keys (so equal cache keys and one entry per request) whatever order the
client sent them in; anything that changes a score changes the key. The label grammar itself
is tests/contract/test_labels.py."""

from __future__ import annotations

import hashlib

from service.engine.targets import RewardTarget, ScoringTarget, canonical_digest


def test_canonical_digest_is_the_sha256_of_sorted_compact_json() -> None:
    expected = hashlib.sha256('{"a":1,"b":"é"}'.encode()).hexdigest()
    assert canonical_digest({"b": "é", "a": 1}) == expected
    assert canonical_digest({"a": 1, "b": "é"}) == expected
    assert canonical_digest(["x", "y"]) != canonical_digest(["y", "x"])  # lists keep order


def test_scoring_targets_of_equal_labels_and_pools_have_equal_keys() -> None:
    first = ScoringTarget.build({"P1": 1, "P2": 0.5}, ["P3", "P1", "P3"])
    second = ScoringTarget.build({"P2": 0.5, "P1": 1.0}, ["P1", "P3"])
    assert first.key == second.key and first.digest == second.digest
    assert first.relevant == {"P1": 1.0, "P2": 0.5}
    assert first.pool == frozenset({"P1", "P3"})


def test_anything_that_changes_a_score_changes_the_key() -> None:
    base = ScoringTarget.build({"P1": 1.0}, None)
    assert base.pool is None and base.pool_digest == ""
    others = [
        ScoringTarget.build({"P1": 2.0}, None),
        ScoringTarget.build({"P2": 1.0}, None),
        ScoringTarget.build({"P1": 1.0}, ["P1"]),
        ScoringTarget.build({"P1": 1.0}, ["P1", "P2"]),
    ]
    keys = {base.key, *(target.key for target in others)}
    assert len(keys) == 5


def test_reward_targets_key_the_prompt_and_the_label() -> None:
    plain = RewardTarget.build("Review: ", None)
    assert (plain.prompt, plain.label) == ("Review: ", "")
    assert plain.key == RewardTarget.build("Review: ", "").key
    assert plain.key != RewardTarget.build("Review: ", "positive").key
    assert plain.key != RewardTarget.build("Review:", None).key
