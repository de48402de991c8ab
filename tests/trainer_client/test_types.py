"""Request value objects: validation and label parsing."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trainer_client import UNSET, Group, Options, Response, Target


def test_target_needs_exactly_one_kind():
    with pytest.raises(ValueError):
        Target()
    with pytest.raises(ValueError):
        Target(query_id="q", relevant={"P1": 1.0})
    with pytest.raises(ValueError):
        Target(relevant={"P1": 0.0})


def test_target_from_label_forms():
    assert Target.from_label("demo-0017") == Target(query_id="demo-0017")
    assert Target.from_label('{"P1": 2, "P2": 1}').relevant == {"P1": 2.0, "P2": 1.0}
    assert Target.from_label('{"relevant": {"P1": 3}}').relevant == {"P1": 3.0}
    assert Target.from_label('{"query_id": "q9"}') == Target(query_id="q9")
    for bad in ("", "   ", "{not json", '{"relevant": [1]}', '{"P1": -1}'):
        with pytest.raises(ValueError):
            Target.from_label(bad)


@given(
    st.dictionaries(st.text(min_size=1, max_size=8), st.floats(0.01, 10), min_size=1, max_size=5)
)
def test_graded_label_json_round_trips(labels):
    assert Target.from_label(json.dumps(labels)).relevant == pytest.approx(labels)


def test_group_needs_responses():
    with pytest.raises(ValueError):
        Group(id="g", target=Target(query_id="q"), responses=[])
    assert Group(id="g", target=Target(query_id="q"), responses=[Response("t")]).pool is None


def test_options_clip_default_is_unset_not_none():
    assert Options().clip is UNSET
    assert not UNSET and repr(UNSET) == "UNSET"
    assert Options(clip=None).clip is None


def test_reward_model_target_and_prompt_reach_the_body() -> None:
    from trainer_client import Group, Options, Response, Target
    from trainer_client._wire import attribute_body

    group = Group(
        "p0",
        Target(reward_model="sentiment", label="positive"),
        [Response("It was lovely. The food was cold.")],
        prompt="Review the hotel.\n",
    )
    body = attribute_body([group], Options(sampler="random", outside="zero"))
    sent = body["groups"][0]
    assert sent["target"] == {"reward_model": "sentiment", "label": "positive"}
    assert sent["prompt"] == "Review the hotel.\n"
    assert body["options"] == {"sampler": "random", "outside": "zero"}
    with pytest.raises(ValueError, match="exactly one"):
        Target(query_id="demo-0001", reward_model="sentiment")
    with pytest.raises(ValueError, match="reward_model only"):
        Target(query_id="demo-0001", label="x")


def test_target_from_label_takes_the_one_label_grammar() -> None:
    # ints and JSON objects (as OpenRLHF passes them) are labels too; a pool is not a target
    assert Target.from_label(17) == Target(query_id="17")
    assert Target.from_label({"query_id": "q1", "pool": ["P1"]}) == Target(query_id="q1")
    assert Target.from_label({"relevant": {"P1": 2}, "pool": ["P1"]}).relevant == {"P1": 2.0}
    for bad in (None, {"P1": 101}, {"query_id": "q", "relevant": {"P1": 1}}, [1, 2]):
        with pytest.raises(ValueError):
            Target.from_label(bad)


def test_new_options_reach_the_body() -> None:
    from trainer_client._wire import options_to_json

    options = Options(
        errors="group", credit="minmax", estimator="owen-sum", negative="inverse", depth=50
    )
    assert options_to_json(options) == {
        "errors": "group",
        "credit": "minmax",
        "estimator": "owen-sum",
        "negative": "inverse",
        "depth": 50,
    }
