"""service/engine/assemble.py on hand-made plans and values (no game, no engine): segment
values from the coalitions the plan evaluated, rewards, group advantages, credit, token
advantages, explain, unmeasured segments as null, and groups that carry an error."""

from __future__ import annotations

import numpy as np
import pytest

from service.engine.assemble import assemble_groups, response_values
from service.engine.plan import GroupPlan, ResponsePlan
from service.errors import BackendError, UnknownQuery
from service.schemas import Options

# "red boots": two segments, every coalition evaluated: v({0}) = 0.2, v({1}) = 0.5,
# v({0, 1}) = 0.8 (entries 0, 1, 2); v(∅) = 0 is not evaluated (entry -1).
RED_BOOTS = ResponsePlan(
    text="red boots",
    query_span=(0, 9),
    spans=[(0, 3), (4, 9)],
    coalitions=[frozenset(), frozenset({0}), frozenset({1}), frozenset({0, 1})],
    queries=["", "red", "boots", "red boots"],
    entries=[-1, 0, 1, 2],
    reward=None,
    token_offsets=[(0, 3), (4, 9)],
)
# "boots": one segment, v = 0.4 (entry 3).
BOOTS = ResponsePlan(
    text="boots",
    query_span=(0, 5),
    spans=[(0, 5)],
    coalitions=[frozenset({0})],
    queries=["boots"],
    entries=[3],
    reward=None,
    token_offsets=[(0, 5)],
)
VALUES = np.array([0.2, 0.5, 0.8, 0.4])
ADVANTAGE = 0.2 / (np.sqrt(0.08) + 1e-6)  # rewards 0.8 and 0.4: (r - 0.6) / (std(ddof=1) + eps)


def test_myerson_values_rewards_advantages_credit_and_tokens() -> None:
    options = Options(estimator="myerson", explain=True)
    assembled = assemble_groups([GroupPlan("g0", [RED_BOOTS, BOOTS])], VALUES, options)
    assert assembled.clip_bound is None
    (group,) = assembled.groups
    assert group.id == "g0" and group.error is None
    red_boots, boots = group.responses
    # Shapley of the two-player game: φ0 = (0.2 + 0.3) / 2, φ1 = (0.5 + 0.6) / 2.
    assert [s.value for s in red_boots.segments] == pytest.approx([0.25, 0.55])
    assert [s.text for s in red_boots.segments] == ["red", "boots"]
    assert [(s.start, s.end) for s in red_boots.segments] == [(0, 3), (4, 9)]
    assert (red_boots.reward, boots.reward) == pytest.approx((0.8, 0.4))
    assert (red_boots.advantage, boots.advantage) == pytest.approx((ADVANTAGE, -ADVANTAGE))
    # Positive credit: shares proportional to the values.
    assert [s.credit for s in red_boots.segments] == pytest.approx([0.25 / 0.8, 0.55 / 0.8])
    # PROP: A_t = T·φ̃_t·Â over the query's tokens, so their mean stays Â.
    expected = [2 * 0.25 / 0.8 * ADVANTAGE, 2 * 0.55 / 0.8 * ADVANTAGE]
    assert red_boots.token_advantages == pytest.approx(expected)
    assert red_boots.redistributed is True
    # One segment: nothing to redistribute, every token keeps Â.
    assert [s.value for s in boots.segments] == pytest.approx([0.4])
    assert [s.credit for s in boots.segments] == [1.0]
    assert boots.token_advantages == pytest.approx([-ADVANTAGE])
    assert boots.redistributed is False
    # explain: every planned coalition with its partial query and value (∅ as 0).
    assert [(c.members, c.query, c.value) for c in red_boots.coalitions] == [
        ([], "", 0.0),
        ([0], "red", 0.2),
        ([1], "boots", 0.5),
        ([0, 1], "red boots", 0.8),
    ]


def test_a_given_reward_replaces_v_of_n_and_explain_off_lists_nothing() -> None:
    given = ResponsePlan(**{**RED_BOOTS.__dict__, "reward": 1.5})
    phi, reward = response_values(given, VALUES, "myerson")
    assert reward == 1.5
    assert phi.tolist() == pytest.approx([0.25, 0.55])  # the values still come from the table
    (group,) = assemble_groups([GroupPlan(None, [given, BOOTS])], VALUES, Options()).groups
    assert group.responses[0].reward == 1.5 and group.responses[0].coalitions is None


def test_uniform_redistribution_gives_every_token_the_advantage() -> None:
    options = Options(estimator="myerson", redistribution="uniform")
    (group,) = assemble_groups([GroupPlan("g0", [RED_BOOTS, BOOTS])], VALUES, options).groups
    assert group.responses[0].token_advantages == pytest.approx([ADVANTAGE] * 2)
    assert group.responses[0].redistributed is False


def test_an_unmeasured_segment_is_null_and_takes_the_mean_share() -> None:
    # Three segments, only {0} and N evaluated: segments 1 and 2 have no evaluated pair.
    sparse = ResponsePlan(
        text="red leather boots",
        query_span=(0, 17),
        spans=[(0, 3), (4, 11), (12, 17)],
        coalitions=[frozenset({0}), frozenset({0, 1, 2})],
        queries=["red", "red leather boots"],
        entries=[0, 1],
        reward=None,
        token_offsets=None,
    )
    (group,) = assemble_groups([GroupPlan("g", [sparse])], np.array([0.3, 0.6]), Options()).groups
    (response,) = group.responses
    assert [s.value for s in response.segments] == pytest.approx([0.3, None, None])
    # The measured segment's share (1) becomes 1/3; each unmeasured one gets 1/3 too.
    assert [s.credit for s in response.segments] == pytest.approx([1 / 3] * 3)
    assert response.token_advantages is None
    assert response.reward == pytest.approx(0.6) and response.advantage == 0.0


def test_groups_with_an_error_come_back_with_it_and_the_others_are_scored() -> None:
    unknown = UnknownQuery("no query 'x'", field="groups[0].target.query_id")
    down = BackendError("reward model 'rm' answered 500")
    plans = [
        GroupPlan("unknown", [], error=unknown),
        GroupPlan("search", [RED_BOOTS, BOOTS]),
        GroupPlan("model", [RED_BOOTS], lane="reward_model:rm"),
    ]
    values = VALUES.copy()
    assembled = assemble_groups(
        plans, values, Options(estimator="myerson", clip=1.0), {"reward_model:rm": down}
    )
    failed, scored, model = assembled.groups
    assert failed.responses == [] and failed.error is not None
    assert (failed.error.code, failed.error.message, failed.error.field) == (
        "unknown_query",
        "no query 'x'",
        "groups[0].target.query_id",
    )
    assert model.responses == [] and model.error is not None
    assert model.error.code == "backend_error" and "rm" in model.error.message
    assert scored.error is None and len(scored.responses) == 2
    # The clip bound is clip·std(Â) over the scored responses only.
    assert assembled.clip_bound == pytest.approx(np.std([ADVANTAGE, -ADVANTAGE]))
    for response in scored.responses:
        assert all(abs(a) <= assembled.clip_bound + 1e-12 for a in response.token_advantages)
    assert values.tolist() == VALUES.tolist()  # read, never written
