"""Hostile and malformed /attribute and /reward bodies against a live `ospo serve`: every defect
gets a 4xx naming the offending field, never a 500 or a hang; bodies over the size limit are
refused before they are read; 20 identical requests at once get 20 identical answers.

Texts with no words (empty, whitespace, emoji, mixed scripts) are *not* refused: a policy can
produce them mid-training, and refusing the whole batch for one rollout would stall the trainer.
They get a well-formed 200 with finite numbers (reward 0 when there is no query at all).
"""

from __future__ import annotations

import json
import math
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import service_process as svc

QUERY_ID = "demo-0001"
TEXT = "<think>find it</think><answer>red cotton sweater for women</answer>"
OPTIONS = {"k": 50, "max_width": 2, "max_coalitions": 8}
HOSTILE = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
TIMEOUT = httpx.Timeout(30.0, connect=5.0)  # a hang is a failure, not a stuck test run


@pytest.fixture(scope="module")
def guarded_client(guarded_service: Any) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {guarded_service.api_key}"}
    with httpx.Client(base_url=guarded_service.url, headers=headers, timeout=TIMEOUT) as http:
        yield http


def body_with(response: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    """A valid one-group body, with `response` fields and top-level keys overridden."""
    body: dict[str, Any] = {
        "groups": [
            {
                "id": "g0",
                "target": {"query_id": QUERY_ID},
                "responses": [{"text": TEXT, **(response or {})}],
            }
        ],
        "options": dict(OPTIONS),
    }
    body.update(top)
    return body


def send_raw(guarded_client: httpx.Client, path: str, text: str) -> httpx.Response:
    """Send JSON text as is (NaN/Infinity tokens, nesting no encoder would produce)."""
    return guarded_client.post(
        path, content=text.encode("utf-8"), headers={"content-type": "application/json"}
    )


def assert_refused(response: httpx.Response, field: str) -> dict[str, Any]:
    """A 4xx whose error names `field` (in error.field, or in the message)."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:500])
    error: dict[str, Any] = response.json()["error"]
    named = (error.get("field") or "").startswith(field) or field in error.get("message", "")
    assert named, f"error does not name {field!r}: {error}"
    return error


def assert_well_formed(answer: dict[str, Any], texts: list[str]) -> None:
    responses = [r for group in answer["groups"] for r in group["responses"]]
    assert len(responses) == len(texts)
    for response, text in zip(responses, texts, strict=True):
        assert math.isfinite(response["reward"]) and math.isfinite(response["advantage"])
        for segment in response["segments"]:
            assert 0 <= segment["start"] < segment["end"] <= len(text)
            assert text[segment["start"] : segment["end"]] == segment["text"]
            assert math.isfinite(segment["value"]) and 0.0 <= segment["credit"] <= 1.0
        assert all(math.isfinite(a) for a in response.get("token_advantages", []))


# --------------------------------------------------------------------------- offsets and spans


@HOSTILE
@given(data=st.data(), text=st.text(min_size=1, max_size=30))
def test_token_offsets_out_of_range_or_overlapping(
    guarded_client: httpx.Client, data: st.DataObject, text: str
) -> None:
    n = len(text)
    good = [[i, i + 1] for i in range(n)]
    position = data.draw(st.integers(0, n - 1), label="position")
    defect = data.draw(
        st.sampled_from(["past_end", "reversed", "overlap", "negative"]), label="defect"
    )
    offsets = [list(pair) for pair in good]
    if defect == "past_end":
        offsets[position] = [position, data.draw(st.integers(n + 1, 10**12))]
    elif defect == "reversed":
        offsets[position] = [position + 1, position]
    elif defect == "overlap":
        if position == 0:
            position = 1 if n > 1 else 0
        if n == 1:
            offsets = [[0, 1], [0, 1]]
            position = 1
        else:
            offsets[position] = [position - 1, position + 1]
    else:
        offsets[position] = [data.draw(st.integers(-(10**12), -1)), position + 1]
    response = send_raw(
        guarded_client,
        "/attribute",
        json.dumps(body_with({"text": text, "token_offsets": offsets})),
    )
    assert_refused(response, "groups[0].responses[0].token_offsets")


@HOSTILE
@given(
    text=st.text(max_size=30),
    start=st.integers(-(10**6), 10**6),
    extra=st.integers(1, 10**12),
)
def test_span_past_the_end_or_reversed(
    guarded_client: httpx.Client, text: str, start: int, extra: int
) -> None:
    # Either past the end of the text, or end before start, or negative.
    span = [start, len(text) + extra] if start >= 0 else [start, 0]
    if start > len(text):
        span = [start, start - 1]
    response = send_raw(
        guarded_client, "/attribute", json.dumps(body_with({"text": text, "span": span}))
    )
    assert_refused(response, "groups[0].responses[0].span")


# --------------------------------------------------------------------------- numbers


NON_FINITE = st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e999"])


@HOSTILE
@given(token=NON_FINITE, where=st.sampled_from(["reward", "clip", "gain"]))
def test_non_finite_numbers_sent_raw(guarded_client: httpx.Client, token: str, where: str) -> None:
    placeholder = "__NUMBER__"
    if where == "reward":
        body, field = body_with({"reward": placeholder}), "groups[0].responses[0].reward"
    elif where == "clip":
        body = body_with()
        body["options"]["clip"] = placeholder
        field = "options.clip"
    else:
        body = body_with()
        body["groups"][0]["target"] = {"relevant": {"P000001": placeholder}}
        field = "groups[0].target.relevant"
    text = json.dumps(body).replace(f'"{placeholder}"', token)
    assert_refused(send_raw(guarded_client, "/attribute", text), field)


@HOSTILE
@given(token=NON_FINITE)
def test_non_finite_reward_label_gains(guarded_client: httpx.Client, token: str) -> None:
    text = (
        '{"query": ["<answer>red sweater</answer>"], "prompts": [""], "labels": [{"P000001": %s}]}'
    )
    assert_refused(send_raw(guarded_client, "/reward", text % token), "labels[0]")


@HOSTILE
@given(
    gain=st.floats(min_value=1024.0, max_value=1e308),
    path=st.sampled_from(["/attribute", "/reward"]),
)
def test_huge_relevance_gains(guarded_client: httpx.Client, gain: float, path: str) -> None:
    # NDCG's 2^gain overflows past 1023: refuse naming the labels, or answer finite numbers.
    if path == "/attribute":
        body = body_with()
        body["groups"][0]["target"] = {"relevant": {"P000001": gain}}
        field = "groups[0].target.relevant"
    else:
        body = {
            "query": ["<answer>red sweater</answer>"],
            "prompts": [""],
            "labels": [{"P000001": gain}],
        }
        field = "labels[0]"
    response = guarded_client.post(path, json=body)
    assert response.status_code != 500, response.text[:300]
    if response.status_code >= 400:
        assert_refused(response, field)
    else:
        answer = response.json()
        numbers = answer.get("rewards") or [
            r["reward"] for g in answer["groups"] for r in g["responses"]
        ]
        assert all(math.isfinite(x) for x in numbers)


@HOSTILE
@given(
    name=st.sampled_from(["k", "max_coalitions", "max_width"]),
    value=st.one_of(st.integers(10**5, 10**40), st.integers(-(10**40), 0)),
)
def test_out_of_range_options(guarded_client: httpx.Client, name: str, value: int) -> None:
    if name == "max_width" and value > 0:
        value = -value  # max_width has no upper limit (it is capped by the segment count)
    body = body_with()
    body["options"][name] = value
    assert_refused(guarded_client.post("/attribute", json=body), f"options.{name}")


@HOSTILE
@given(
    groups=st.integers(65, 80),
    responses=st.integers(65, 80),
    which=st.sampled_from(["groups", "responses", "offsets"]),
)
def test_group_sizes_over_the_limits(
    guarded_client: httpx.Client, guarded_service: Any, groups: int, responses: int, which: str
) -> None:
    tiny = {"text": "a"}
    if which == "groups":
        body = {
            "groups": [
                {"id": f"g{i}", "target": {"query_id": QUERY_ID}, "responses": [tiny]}
                for i in range(groups)
            ]
        }
        field = "groups"
    elif which == "responses":
        body = {
            "groups": [
                {"id": "g0", "target": {"query_id": QUERY_ID}, "responses": [tiny] * responses}
            ]
        }
        field = "groups[0].responses"
    else:
        text = "a" * 5000
        limit = guarded_service.max_token_offsets
        body = body_with({"text": text, "token_offsets": [[0, 0]] * (limit + groups)})
        field = "groups[0].responses[0].token_offsets"
    assert_refused(guarded_client.post("/attribute", json=body), field)


def test_text_over_the_character_limit(guarded_client: httpx.Client) -> None:
    assert_refused(
        guarded_client.post("/attribute", json=body_with({"text": "a " * 4001})),
        "groups[0].responses[0].text",
    )


@HOSTILE
@given(data=st.data(), copies=st.integers(2, 5))
def test_duplicate_group_ids(
    guarded_client: httpx.Client, data: st.DataObject, copies: int
) -> None:
    # Answers are matched to groups by id as well as by order; two groups with one id make
    # the answer ambiguous, so the repeated one is refused, naming it.
    ids = [f"g{i}" for i in range(copies)]
    repeated_at = data.draw(st.integers(1, copies - 1), label="repeated_at")
    ids[repeated_at] = ids[data.draw(st.integers(0, repeated_at - 1), label="copy_of")]
    body = {
        "groups": [
            {
                "id": group_id,
                "target": {"query_id": QUERY_ID},
                "responses": [{"text": "<answer>x</answer>"}],
            }
            for group_id in ids
        ],
        "options": OPTIONS,
    }
    assert_refused(guarded_client.post("/attribute", json=body), f"groups[{repeated_at}].id")


# --------------------------------------------------------------------------- structure


@HOSTILE
@given(
    depth=st.integers(100, 20000),
    kind=st.sampled_from(["[", '{"a":']),
    where=st.sampled_from(["groups", "text", "options", "top"]),
    path=st.sampled_from(["/attribute", "/reward"]),
)
def test_deeply_nested_json(
    guarded_client: httpx.Client, depth: int, kind: str, where: str, path: str
) -> None:
    closer = "]" if kind == "[" else "}"
    nested = kind * depth + "1" + closer * depth
    if where == "top":
        text = nested
    elif path == "/reward":
        text = '{"query": [' + nested + '], "prompts": [""], "labels": ["demo-0001"]}'
    elif where == "groups":
        text = '{"groups": ' + nested + "}"
    elif where == "text":
        text = json.dumps(body_with({"text": "__N__"})).replace('"__N__"', nested)
    else:
        body = body_with()
        body["options"]["k"] = "__N__"
        text = json.dumps(body).replace('"__N__"', nested)
    response = send_raw(guarded_client, path, text)
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    error = response.json()["error"]
    assert error.get("field") or "body" in error["message"] or "JSON" in error["message"], error


JSON_VALUES = st.recursive(
    # Finite floats only: JSON has no infinities (non-finite numbers have their own test).
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@HOSTILE
@given(
    value=JSON_VALUES,
    key=st.sampled_from(
        [
            "groups",
            "options",
            "target",
            "responses",
            "text",
            "span",
            "token_offsets",
            "reward",
            "pool",
        ]
    ),
)
def test_wrong_types_anywhere(guarded_client: httpx.Client, value: Any, key: str) -> None:
    body = body_with()
    group = body["groups"][0]
    holders: dict[str, dict[str, Any]] = {
        "groups": body, "options": body, "target": group, "responses": group, "pool": group,
        "text": group["responses"][0], "span": group["responses"][0],
        "token_offsets": group["responses"][0], "reward": group["responses"][0],
    }  # fmt: skip
    holders[key][key] = value
    response = guarded_client.post("/attribute", json=body)
    assert response.status_code < 500, response.text[:300]
    if response.status_code >= 400:
        assert response.json()["error"]["code"], response.text


def test_invalid_utf8_and_not_json(guarded_client: httpx.Client) -> None:
    for payload in (b"\xff\xfe\x00garbage", b'{"groups": [', b"", b"null", b"[]", b'"text"'):
        response = guarded_client.post(
            "/attribute", content=payload, headers={"content-type": "application/json"}
        )
        assert 400 <= response.status_code < 500, (payload, response.status_code, response.text)


# --------------------------------------------------------------------------- texts without words


WORDLESS = st.one_of(
    st.just(""),
    st.text(alphabet=" \t\n\r\u00a0\u2003\u3000", max_size=20),
    st.text(alphabet="😀🎉🔥👟🧦🌧️✨", min_size=1, max_size=12),
    st.lists(
        st.sampled_from(["boots", "東京", "обувь", "نعل", "靴", "café", "🥾", "size 8"]),
        min_size=1,
        max_size=6,
    ).map(" ".join),
)


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(texts=st.lists(WORDLESS, min_size=1, max_size=3), tagged=st.booleans())
def test_wordless_and_mixed_script_texts(
    guarded_client: httpx.Client, texts: list[str], tagged: bool
) -> None:
    texts = [f"<answer>{text}</answer>" if tagged else text for text in texts]
    responses = [
        {
            "text": text,
            "token_offsets": [[i, i + 1] for i in range(len(text))] + [[len(text), len(text)]],
        }
        for text in texts
    ]
    body = {
        "groups": [{"id": "g0", "target": {"query_id": QUERY_ID}, "responses": responses}],
        "options": OPTIONS,
    }
    response = guarded_client.post("/attribute", json=body)
    assert response.status_code == 200, response.text[:500]
    answer = response.json()
    assert_well_formed(answer, texts)
    for text, result in zip(texts, answer["groups"][0]["responses"], strict=True):
        assert len(result["token_advantages"]) == len(text) + 1
        if not text.replace("<answer>", "").replace("</answer>", "").strip():
            assert result["reward"] == 0.0 and result["segments"] == []


# --------------------------------------------------------------------------- body size


def _raw_request(port: int, head: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(head)
    return sock


def _read_status(sock: socket.socket, timeout_s: float) -> int:
    sock.settimeout(timeout_s)
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1])


def _headers(service: Any, extra: str) -> bytes:
    return (
        f"POST /attribute HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {service.api_key}\r\n"
        f"Content-Type: application/json\r\n{extra}\r\n"
    ).encode()


def test_declared_body_over_the_limit_is_refused_before_it_is_read(guarded_service: Any) -> None:
    declared = 1024 * 1024 * 1024  # 1 GiB announced, 1 KiB sent: the server must not wait for it
    sock = _raw_request(
        guarded_service.port, _headers(guarded_service, f"Content-Length: {declared}\r\n")
    )
    try:
        sock.sendall(b'{"groups": [' + b" " * 1024)
        started = time.monotonic()
        assert _read_status(sock, timeout_s=10) == 413
        assert time.monotonic() - started < 5
    finally:
        sock.close()


def test_streamed_body_over_the_limit_is_cut_off(guarded_service: Any) -> None:
    # No Content-Length (chunked): refused as soon as the bytes pass the limit, not at the end.
    sock = _raw_request(
        guarded_service.port, _headers(guarded_service, "Transfer-Encoding: chunked\r\n")
    )
    try:
        chunk = b" " * 4096
        try:
            for _ in range(guarded_service.max_body_bytes // len(chunk) + 2):
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except OSError:
            pass  # the server answered and closed while we were still sending: fine
        assert _read_status(sock, timeout_s=10) == 413
    finally:
        sock.close()


def test_body_limit_answer_names_the_limit(
    guarded_client: httpx.Client, guarded_service: Any
) -> None:
    big = body_with({"text": "a" * (guarded_service.max_body_bytes + 10)})
    error = assert_refused(guarded_client.post("/attribute", json=big), "body")
    assert str(guarded_service.max_body_bytes) in error["message"]


# --------------------------------------------------------------------------- concurrency


def test_twenty_identical_requests_at_once_get_identical_answers(
    guarded_client: httpx.Client, demo_query_records: list[dict[str, Any]]
) -> None:
    """Identical requests racing on a cold cache. `groups` and `model` (the training signal)
    must be identical to the bit; `stats.coalitions` and `unique_queries` describe the request
    and must match too. `cache_hits`, `encoded` and `timings_ms` describe which of the racing
    requests computed and which found the others' scores already cached: they legitimately
    differ between the 20 and are only range-checked."""
    body = svc.attribute_body(demo_query_records, seed=4242, groups=2, responses=3)
    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(
            pool.map(lambda _: guarded_client.post("/attribute", json=body), range(20))
        )
    assert [r.status_code for r in responses] == [200] * 20, [
        r.text[:200] for r in responses if r.status_code != 200
    ]
    answers = [r.json() for r in responses]
    first = svc.answer_part(answers[0])
    for answer in answers[1:]:
        assert svc.answer_part(answer) == first
        for key in ("coalitions", "unique_queries"):
            assert answer["stats"][key] == answers[0]["stats"][key]
    for answer in answers:
        stats = answer["stats"]
        assert 0 <= stats["cache_hits"] <= stats["unique_queries"]
    # A later repeat is all hits and still identical.
    again = guarded_client.post("/attribute", json=body).json()
    assert svc.answer_part(again) == first
    assert again["stats"]["cache_hits"] == again["stats"]["unique_queries"]
