"""API-key auth on a live `ospo serve`: no key → 401, a wrong key → 401 (near misses included),
the right key → served; /healthz and /readyz stay open for probes; the key (and the wrong keys
tried) never appear in the server's logs, even at DEBUG, nor in any answer."""

from __future__ import annotations

import string
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

PROTECTED = [
    ("POST", "/attribute", {"groups": []}),
    (
        "POST",
        "/reward",
        {"query": ["<answer>red sweater</answer>"], "prompts": [""], "labels": ["demo-0001"]},
    ),
    ("GET", "/metrics", None),
    ("GET", "/v1/retrievers", None),
    ("GET", "/v1/retrievers/default/search?q=red+sweater&k=3", None),
    ("GET", "/openapi.json", None),
    ("GET", "/no/such/route", None),
]
PUBLIC = ["/healthz", "/readyz"]


@pytest.fixture(scope="module")
def anonymous(guarded_service: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=guarded_service.url, timeout=30.0) as http:
        yield http


def near_misses(key: str) -> list[str]:
    # (httpx refuses header values with trailing whitespace, so "Bearer " cannot be sent.)
    return [
        f"Bearer {key[:-1]}",
        f"Bearer {key}x",
        f"Bearer  {key}",
        f"Bearer {key.upper()}",
        f"Token {key}",
        key,
        "Bearer",
        "Basic b3Nwbzpvc3Bv",
    ]


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED)
def test_no_key_is_401(anonymous: httpx.Client, method: str, path: str, body: Any) -> None:
    response = anonymous.request(method, path, json=body)
    assert response.status_code == 401, response.text
    assert response.headers.get("www-authenticate", "").lower().startswith("bearer")
    assert response.json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED)
def test_wrong_keys_are_401(
    anonymous: httpx.Client, guarded_service: Any, method: str, path: str, body: Any
) -> None:
    for header in near_misses(guarded_service.api_key):
        response = anonymous.request(method, path, json=body, headers={"Authorization": header})
        assert response.status_code == 401, (header, response.status_code)
        assert guarded_service.api_key not in response.text


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    key=st.text(alphabet=string.ascii_letters + string.digits + "-_.~+/=", min_size=1, max_size=60)
)
def test_random_keys_are_401(anonymous: httpx.Client, guarded_service: Any, key: str) -> None:
    if key == guarded_service.api_key:
        return
    response = anonymous.get("/v1/retrievers", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 401


def test_right_key_is_served_and_probes_stay_open(
    anonymous: httpx.Client, guarded_service: Any
) -> None:
    auth = {"Authorization": f"Bearer {guarded_service.api_key}"}
    assert anonymous.get("/v1/retrievers", headers=auth).status_code == 200
    assert anonymous.get("/metrics", headers=auth).status_code == 200
    search = anonymous.get(
        "/v1/retrievers/default/search", params={"q": "red sweater", "k": 3}, headers=auth
    )
    assert search.status_code == 200 and len(search.json()["results"]) == 3
    for path in PUBLIC:
        assert anonymous.get(path).status_code == 200, path


def test_key_never_logged_nor_echoed(anonymous: httpx.Client, guarded_service: Any) -> None:
    key = guarded_service.api_key
    auth = {"Authorization": f"Bearer {key}"}
    # Traffic that would tempt a careless logger: errors, 404s, a refused body, wrong keys.
    answers = [
        anonymous.post("/attribute", json={"groups": "nope"}, headers=auth),
        anonymous.post(
            "/attribute", content=b"{not json", headers={**auth, "content-type": "application/json"}
        ),
        anonymous.get("/v1/retrievers/nope/search?q=x", headers=auth),
        anonymous.get("/metrics", headers=auth),
        *(anonymous.get("/v1/retrievers", headers={"Authorization": h}) for h in near_misses(key)),
    ]
    for answer in answers:
        assert key not in answer.text and key not in str(answer.headers)
    log = guarded_service.log_text()
    assert "DEBUG" in log, "the guarded service should log at DEBUG (stronger check)"
    assert key not in log
    for prefix in (key[:-1], key[: len(key) // 2 + 4]):
        assert prefix not in log, "a near-miss key reached the log"
