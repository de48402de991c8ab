"""Every limit and malformed input gets its 4xx in the one error envelope naming the field,
never a 500 (service/api/handlers.py; the body limit is the middleware's)."""

from __future__ import annotations

import json

import pytest

SMALL_LIMITS = {
    "max_groups": 2,
    "max_responses": 3,
    "max_text_chars": 200,
    "max_token_offsets": 5,
    "max_coalitions_limit": 64,
    "max_k": 100,
    "max_shapley_segments": 4,
    "max_body_bytes": 4096,
}


@pytest.fixture(scope="module")
def limited(service_data_dir):
    from fastapi.testclient import TestClient

    from service.api import create_app
    from service.config import Settings

    settings = Settings(data_dir=service_data_dir, redis_url=None, **SMALL_LIMITS)
    with TestClient(create_app(settings)) as started:
        yield started


def body(responses=None, groups=1, **options):
    responses = responses or [{"text": "red leather boots"}]
    group = {"target": {"query_id": "demo-0000"}, "responses": responses}
    return {"groups": [group] * groups, "options": options}


def assert_error(response, status: int, field: str, *words: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["field"] == field, error
    assert error["code"] and error["message"]
    for word in words:
        assert word in error["message"], error
    return error


CASES = [
    (body(groups=3), "groups", ["max_groups=2"]),
    (body([{"text": "a"}] * 4), "groups[0].responses", ["max_responses=3"]),
    (body([{"text": "x" * 201}]), "groups[0].responses[0].text", ["max_text_chars=200"]),
    (
        body([{"text": "a b c d e f", "token_offsets": [[0, 1]] * 6}]),
        "groups[0].responses[0].token_offsets",
        ["max_token_offsets=5"],
    ),
    (body(max_coalitions=65), "options.max_coalitions", ["64"]),
    (body(max_coalitions=1), "options.max_coalitions", ["2"]),
    (body(k=101), "options.k", ["max_k=100"]),
    (body(k=0), "options.k", []),
    (body(max_width=0), "options.max_width", []),
    (
        body([{"text": "abc", "token_offsets": [[0, 4]]}]),
        "groups[0].responses[0].token_offsets[0]",
        ["3 characters"],
    ),
    (
        body([{"text": "abc", "token_offsets": [[2, 1]]}]),
        "groups[0].responses[0].token_offsets[0]",
        ["start"],
    ),
    (
        body([{"text": "abc def", "token_offsets": [[0, 3], [2, 5]]}]),
        "groups[0].responses[0].token_offsets[1]",
        ["overlap"],
    ),
    (
        body([{"text": "abc def", "token_offsets": [[4, 7], [0, 3]]}]),
        "groups[0].responses[0].token_offsets[1]",
        ["sorted"],
    ),
    (body([{"text": "abc", "span": [1, 9]}]), "groups[0].responses[0].span", ["3 characters"]),
    (
        body([{"text": "red, green, blue, white, black, pink"}], estimator="shapley"),
        "groups[0].responses[0].text",
        ["max_shapley_segments=4"],
    ),
    (
        body(
            [{"text": "red, green, blue, white, black, pink, grey, gold"}],
            estimator="myerson",
            max_coalitions=10,
        ),
        "options.max_coalitions",
        ["myerson", "10"],
    ),
    (body(estimator="banzhaf"), "options.estimator", []),
    (body(redistribution="tokens"), "options.redistribution", []),
    (
        body([{"text": "abc", "token_offsets": [[0, 1, 2]]}]),
        "groups[0].responses[0].token_offsets[0]",
        [],
    ),
    (
        {"groups": [{"target": {}, "responses": [{"text": "a"}]}]},
        "groups[0].target",
        ["exactly one"],
    ),
    (
        {"groups": [{"target": {"relevant": {"P1": 0}}, "responses": [{"text": "a"}]}]},
        "groups[0].target.relevant.P1",
        [],
    ),
    ({"groups": [], "options": {}}, "groups", ["empty"]),
    (
        {"groups": [{"target": {"query_id": "demo-0000"}, "responses": []}]},
        "groups[0].responses",
        ["empty"],
    ),
    (
        {"groups": [{"target": {"query_id": "demo-0000"}, "responses": [{"txt": "a"}]}]},
        "groups[0].responses[0].text",
        [],
    ),
    (
        {
            "groups": [{"target": {"query_id": "demo-0000"}, "responses": [{"text": "a"}]}],
            "bogus": 1,
        },
        "bogus",
        [],
    ),
]


@pytest.mark.parametrize(
    ("payload", "field", "words"), CASES, ids=[c[1] + ":" + ",".join(c[2]) for c in CASES]
)
def test_limits_and_bad_input_give_422_naming_the_field(limited, payload, field, words):
    assert_error(limited.post("/attribute", json=payload), 422, field, *words)


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_reward_is_refused(limited, bad):
    raw = json.dumps(body()).replace('"text": "red leather boots"', f'"text": "a", "reward": {bad}')
    response = limited.post("/attribute", content=raw, headers={"content-type": "application/json"})
    assert bad in raw
    assert_error(response, 422, "groups[0].responses[0].reward")


def test_unknown_query_and_retriever_are_404(limited):
    payload = body()
    payload["groups"][0]["target"] = {"query_id": "no-such-query"}
    assert_error(
        limited.post("/attribute", json=payload), 404, "groups[0].target.query_id", "no-such-query"
    )
    assert_error(
        limited.post("/attribute", json=body(retriever="nope")), 404, "options.retriever", "nope"
    )
    assert_error(limited.get("/v1/retrievers/nope/search", params={"q": "x"}), 404, "name")


def test_body_over_the_limit_is_413_before_parsing(limited):
    huge = json.dumps(body([{"text": "x" * 5000}])).encode()
    assert_error(
        limited.post("/attribute", content=huge, headers={"content-type": "application/json"}),
        413,
        "body",
        "max_body_bytes=4096",
    )

    def chunks():
        # No Content-Length: the streamed bytes are counted; not even valid JSON is needed.
        for _ in range(10):
            yield b"{" * 1000

    response = limited.post(
        "/attribute", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_error(response, 413, "body", "max_body_bytes=4096")


def test_invalid_json_and_wrong_types(limited):
    response = limited.post(
        "/attribute", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"]
    assert_error(limited.post("/attribute", json={"groups": "x"}), 422, "groups")
    assert_error(limited.post("/attribute", json=body(k="many")), 422, "options.k")


def test_search_limits(limited):
    assert_error(
        limited.get("/v1/retrievers/default/search", params={"q": "boots", "k": 101}),
        422,
        "k",
        "max_k=100",
    )
    assert_error(limited.get("/v1/retrievers/default/search", params={"q": " "}), 422, "q")
    assert_error(limited.get("/v1/retrievers/default/search"), 422, "q")


def test_unknown_path_is_a_json_404(limited):
    response = limited.get("/nope")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
