"""AttributionClient against httpx.MockTransport: bodies, retries and backoff, Retry-After,
chunking order and stats, error mapping, auth header."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

import trainer_client as tc


def make_client(service: Any, sleeps: list[float], **kwargs: Any) -> tc.AttributionClient:
    kwargs.setdefault("jitter", lambda: 0.0)
    return tc.AttributionClient(
        "http://ospo.test", transport=httpx.MockTransport(service), sleep=sleeps.append, **kwargs
    )


def test_attribute_round_trip_sends_documented_body(fake_service, sleeps):
    group = tc.Group(
        id="step1/p0",
        target=tc.Target(relevant={"P1": 2.0, "P2": 1.0}),
        pool=["P1", "P2", "P3"],
        responses=[
            tc.Response(
                text="<answer>red boots</answer>",
                span=(8, 17),
                token_offsets=[(8, 11), (12, 17), (17, 17)],
                reward=0.5,
            )
        ],
    )
    options = tc.Options(retriever="default", max_width=4, clip=None, seed=7)
    with make_client(fake_service, sleeps) as client:
        result = client.attribute([group], options)
    (body,) = fake_service.attribute_bodies()
    assert body["groups"][0] == {
        "id": "step1/p0",
        "target": {"relevant": {"P1": 2.0, "P2": 1.0}},
        "pool": ["P1", "P2", "P3"],
        "responses": [
            {
                "text": "<answer>red boots</answer>",
                "span": [8, 17],
                "token_offsets": [[8, 11], [12, 17], [17, 17]],
                "reward": 0.5,
            }
        ],
    }
    # Unset options are omitted (service defaults); clip=None is sent to disable clipping.
    assert body["options"] == {"retriever": "default", "max_width": 4, "clip": None, "seed": 7}
    (response,) = result.responses
    assert response.token_advantages == (0.0, 1.0, 2.0)
    assert response.reward == float(len(group.responses[0].text))
    assert response.segments[0].text == "<"
    assert result.model.encoder == "fake"


def test_options_unset_clip_is_omitted(fake_service, sleeps, make_groups):
    with make_client(fake_service, sleeps) as client:
        client.attribute(make_groups(1), tc.Options())
        client.attribute(make_groups(1))
    assert [b["options"] for b in fake_service.attribute_bodies()] == [{}, {}]


def test_api_key_is_sent_as_bearer(fake_service, sleeps, make_groups):
    with make_client(fake_service, sleeps, api_key="s3cret") as client:
        client.attribute(make_groups(1))
    assert fake_service.requests[0].headers["authorization"] == "Bearer s3cret"


def test_no_auth_header_without_key(fake_service, sleeps):
    with make_client(fake_service, sleeps) as client:
        assert client.healthz()
    assert "authorization" not in fake_service.requests[0].headers


@pytest.mark.parametrize("code", [429, 500, 502, 503, 504])
def test_retryable_statuses_are_retried_with_exponential_backoff(
    fake_service, sleeps, reply, make_groups, code
):
    fake_service.fail_next(reply.status(code), reply.status(code), reply.status(code))
    with make_client(
        fake_service, sleeps, retry=tc.RetryPolicy(max_retries=5, backoff_base=0.5)
    ) as client:
        result = client.attribute(make_groups(1))
    assert len(result.groups) == 1
    assert len(fake_service.requests) == 4
    # jitter 0 -> the lower edge of each window: base * 2**attempt / 2
    assert sleeps == [0.25, 0.5, 1.0]


def test_backoff_is_capped(fake_service, sleeps, reply, make_groups):
    fake_service.fail_next(*[reply.status(503)] * 4)
    policy = tc.RetryPolicy(max_retries=4, backoff_base=1.0, backoff_max=2.0)
    with make_client(fake_service, sleeps, retry=policy, jitter=lambda: 0.999999) as client:
        client.attribute(make_groups(1))
    assert sleeps == pytest.approx([1.0, 2.0, 2.0, 2.0], abs=1e-5)


def test_retry_after_is_honoured(fake_service, sleeps, reply, make_groups):
    fake_service.fail_next(
        reply.status(503, headers={"Retry-After": "7"}),
        reply.status(429, headers={"Retry-After": "0"}),
    )
    with make_client(fake_service, sleeps) as client:
        client.attribute(make_groups(1))
    assert sleeps == [7.0, 0.0]


def test_gives_up_after_max_retries_with_service_unavailable(
    fake_service, sleeps, reply, make_groups
):
    fake_service.fail_next(
        *[reply.status(503, error={"code": "overloaded", "message": "busy", "field": None})] * 10
    )
    with (
        make_client(fake_service, sleeps, max_retries=2) as client,
        pytest.raises(tc.ServiceUnavailable) as info,
    ):
        client.attribute(make_groups(1))
    assert (
        info.value.status == 503
        and info.value.code == "overloaded"
        and info.value.message == "busy"
    )
    assert len(fake_service.requests) == 3 and len(sleeps) == 2


@pytest.mark.parametrize(
    ("httpx_error", "ours"),
    [
        (httpx.ConnectError, tc.ConnectError),
        (httpx.ConnectTimeout, tc.ConnectTimeout),
        (httpx.ReadTimeout, tc.ReadTimeout),
        (httpx.WriteTimeout, tc.WriteTimeout),
        (httpx.PoolTimeout, tc.PoolTimeout),
        (httpx.RemoteProtocolError, tc.NetworkError),
    ],
)
def test_transport_errors_are_retried_then_mapped(
    fake_service, sleeps, reply, make_groups, httpx_error, ours
):
    fake_service.fail_next(*[reply.raise_(httpx_error)] * 3)
    with make_client(fake_service, sleeps, max_retries=2) as client, pytest.raises(ours) as info:
        client.attribute(make_groups(1))
    assert isinstance(info.value, tc.TransportError)
    assert isinstance(info.value.__cause__, httpx_error)
    assert len(fake_service.requests) == 3


def test_transport_error_then_success(fake_service, sleeps, reply, make_groups):
    fake_service.fail_next(reply.raise_(httpx.ConnectError))
    with make_client(fake_service, sleeps) as client:
        assert len(client.attribute(make_groups(2)).groups) == 2
    assert len(sleeps) == 1


@pytest.mark.parametrize(
    ("code", "exc_type"),
    [
        (400, tc.ClientRequestError),
        (401, tc.AuthenticationError),
        (404, tc.ClientRequestError),
        (422, tc.ClientRequestError),
    ],
)
def test_client_errors_are_not_retried_and_carry_the_error_body(
    fake_service, sleeps, reply, make_groups, code, exc_type
):
    error = {
        "code": "invalid_request",
        "message": "bad offsets",
        "field": "groups[0].responses[1].token_offsets",
    }
    fake_service.fail_next(reply.status(code, error=error))
    with make_client(fake_service, sleeps) as client, pytest.raises(exc_type) as info:
        client.attribute(make_groups(1))
    assert (info.value.status, info.value.code, info.value.field) == (
        code,
        "invalid_request",
        error["field"],
    )
    assert "bad offsets" in str(info.value)
    assert not isinstance(info.value, tc.ServiceUnavailable)
    assert len(fake_service.requests) == 1 and sleeps == []


def test_error_without_json_body(fake_service, sleeps):
    fake_service.fail_next(lambda request: httpx.Response(502, text="<html>bad gateway</html>"))
    with (
        make_client(fake_service, sleeps, max_retries=0) as client,
        pytest.raises(tc.ServiceUnavailable) as info,
    ):
        client.attribute([tc.Group("g", tc.Target(query_id="q"), [tc.Response("t")])])
    assert info.value.code == "http_502" and "bad gateway" in info.value.message


def test_malformed_success_body_raises_response_format_error(fake_service, sleeps, make_groups):
    fake_service.fail_next(lambda request: httpx.Response(200, json={"groups": "nope"}))
    with make_client(fake_service, sleeps) as client, pytest.raises(tc.ResponseFormatError):
        client.attribute(make_groups(1))


def test_token_advantage_count_mismatch_is_detected(fake_service, sleeps, make_groups):
    def short(request):
        answer = fake_service_answer(request)
        answer["groups"][0]["responses"][0]["token_advantages"] = [0.0]
        return httpx.Response(200, json=answer)

    fake_service.fail_next(short)
    with (
        make_client(fake_service, sleeps) as client,
        pytest.raises(tc.ResponseFormatError, match="token advantages"),
    ):
        client.attribute(make_groups(1))


def fake_service_answer(request: httpx.Request) -> dict[str, Any]:
    body = json.loads(request.content)
    groups = []
    for group in body["groups"]:
        responses = [
            {
                "reward": 0.0,
                "advantage": 0.0,
                "segments": [],
                "token_advantages": [0.0] * len(r.get("token_offsets") or []),
            }
            for r in group["responses"]
        ]
        groups.append({"id": group["id"], "responses": responses})
    return {
        "groups": groups,
        "stats": {},
        "model": {"retriever": "r", "encoder": "e", "index_version": "v"},
    }


def test_large_batches_are_split_into_chunks_and_reassembled_in_order(
    fake_service, sleeps, make_groups
):
    groups = make_groups(11, size=3)
    with make_client(fake_service, sleeps, max_groups_per_request=4, max_concurrency=3) as client:
        result = client.attribute(groups)
    bodies = fake_service.attribute_bodies()
    assert sorted(len(b["groups"]) for b in bodies) == [3, 4, 4]
    assert [g.id for g in result.groups] == [g.id for g in groups]
    # each response's reward is its own text length: the pairing survived reassembly
    for group, group_result in zip(groups, result.groups, strict=True):
        assert [r.reward for r in group_result.responses] == [
            float(len(r.text)) for r in group.responses
        ]
    # stats are summed over the 3 chunks
    assert result.stats.coalitions == 10 * 11
    assert result.stats.cache_hits == 3
    assert result.stats.timings_ms == {"encode": 4.5, "total": 12.0}


def test_a_failing_chunk_fails_the_call(fake_service, sleeps, reply, make_groups):
    fake_service.fail_next(reply.status(422))
    with (
        make_client(fake_service, sleeps, max_groups_per_request=2) as client,
        pytest.raises(tc.ClientRequestError),
    ):
        client.attribute(make_groups(5))


def test_reward_retrievers_search_health(fake_service, sleeps):
    with make_client(fake_service, sleeps) as client:
        reward = client.reward(["abc", "abcdef"], ["p", "p"], ["q1", "q1"])
        assert reward.rewards == (0.03, 0.06) and reward.scores == reward.rewards
        (info,) = client.retrievers()
        assert (info.name, info.dim, info.size) == ("default", 8, 3)
        hits = client.search("default", "red boots", k=3)
        assert [h.id for h in hits] == ["P0", "P1", "P2"] and hits[0].title == "red boots"
        assert client.healthz()
        ready = client.readyz()
        assert ready.ready and ready.cache_backend == "memory" and ready.cache_degraded is False
    assert json.loads(fake_service.requests[0].content) == {
        "query": ["abc", "abcdef"],
        "prompts": ["p", "p"],
        "labels": ["q1", "q1"],
    }


def test_readyz_not_ready_is_returned_not_raised(fake_service, sleeps):
    fake_service.fail_next(lambda request: httpx.Response(503, json={"status": "loading"}))
    with make_client(fake_service, sleeps) as client:
        ready = client.readyz()
    assert not ready.ready and ready.status == "loading" and sleeps == []


def test_reward_needs_equal_lengths(fake_service, sleeps):
    with make_client(fake_service, sleeps) as client, pytest.raises(ValueError):
        client.reward(["a"], ["p", "p"], ["q"])


def test_empty_batch_is_a_value_error(fake_service, sleeps):
    with make_client(fake_service, sleeps) as client, pytest.raises(ValueError):
        client.attribute([])


def test_default_timeout_is_180s_read():
    assert tc.DEFAULT_TIMEOUT.read == 180.0
    client = tc.AttributionClient()
    assert client._http.timeout.read == 180.0
    client.close()


def test_search_escapes_the_retriever_name(fake_service, sleeps):
    with make_client(fake_service, sleeps) as client:
        client.search("a/b c", "boots", k=1)
    assert fake_service.requests[0].url.raw_path.startswith(b"/v1/retrievers/a%2Fb%20c/search?")


def test_group_errors_and_the_new_answer_fields_are_parsed(fake_service, sleeps, make_groups):
    def answer(request: httpx.Request) -> httpx.Response:
        body = fake_service_answer(request)
        body["groups"][1] = {
            "id": body["groups"][1]["id"],
            "responses": [],
            "error": {"code": "unknown_query", "message": "no query q1", "field": "groups[1]"},
        }
        first = body["groups"][0]["responses"][0]
        first["redistributed"] = True
        first["segments"] = [
            {"start": 0, "end": 2, "text": "g0", "credit": 0.5},  # value missing
            {"start": 3, "end": 5, "text": "r0", "value": None, "credit": 0.5},
        ]
        first["unknown_field"] = {"ignored": True}
        body["clip_bound"] = 1.5
        return httpx.Response(200, json=body)

    fake_service.fail_next(answer)
    with make_client(fake_service, sleeps) as client:
        result = client.attribute(make_groups(2), tc.Options(errors="group"))
    assert fake_service.attribute_bodies()[0]["options"] == {"errors": "group"}
    scored, failed = result.groups
    assert failed.responses == () and failed.error is not None
    assert (failed.error.code, failed.error.message, failed.error.field) == (
        "unknown_query",
        "no query q1",
        "groups[1]",
    )
    assert scored.error is None and scored.responses[0].redistributed is True
    assert scored.responses[1].redistributed is None  # the service did not say
    assert [s.value for s in scored.responses[0].segments] == [None, None]
    assert result.clip_bound == 1.5


def test_retry_budget_bounds_the_time_spent_retrying(fake_service, reply, make_groups):
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    fake_service.fail_next(*[reply.status(503)] * 100)
    policy = tc.RetryPolicy(max_retries=None, backoff_base=1.0, backoff_max=4.0, max_elapsed_s=10.0)
    client = tc.AttributionClient(
        "http://ospo.test",
        transport=httpx.MockTransport(fake_service),
        sleep=sleep,
        jitter=lambda: 0.999999,
        clock=lambda: now[0],
        retry=policy,
    )
    with client, pytest.raises(tc.ServiceUnavailable):
        client.attribute(make_groups(1))
    # waits of ~1, 2, 4, then the next 4 s wait would end past the 10 s budget: no retry
    assert sleeps == pytest.approx([1.0, 2.0, 4.0], abs=1e-5)
    assert len(fake_service.requests) == 4
    with pytest.raises(ValueError):
        tc.RetryPolicy(max_retries=None)


def test_reward_sends_the_game_parameters_it_is_given(fake_service, sleeps):
    with make_client(fake_service, sleeps) as client:
        client.reward(["abc"], ["p"], ["q1"])
        client.reward(["abc"], ["p"], ["q1"], retriever="mpnet", k=5, depth=50, query_tag="search")
    plain, game = (request.url.params for request in fake_service.requests)
    assert dict(plain) == {}
    assert dict(game) == {"retriever": "mpnet", "k": "5", "depth": "50", "query_tag": "search"}
