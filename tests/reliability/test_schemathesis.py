"""Schemathesis against the live service's own OpenAPI schema: every operation, with data that
fits the schema and data that does not, gets an answer below 500 within the timeout (no 500s,
no hangs). The example count is bounded so the whole module runs in about a minute or two."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.support import service_process as svc

# Operations the contract (docs/API.md) defines; the schema may add more, never lack these.
CONTRACT_OPERATIONS = {
    "POST /attribute",
    "POST /reward",
    "GET /v1/retrievers",
    "GET /v1/retrievers/{name}/search",
    "GET /healthz",
    "GET /readyz",
    "GET /metrics",
}
EXAMPLES = {GenerationMode.POSITIVE: 40, GenerationMode.NEGATIVE: 40}
CALL_TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def auth(guarded_service: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {guarded_service.api_key}"}


@pytest.fixture(scope="module")
def api_schema(guarded_service: Any, auth: dict[str, str]) -> Any:
    return schemathesis.openapi.from_url(
        f"{guarded_service.url}/openapi.json", headers=dict(auth), timeout=30
    )


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as http:
        yield http


def operation_labels(schema: Any) -> list[str]:
    return sorted(result.ok().label for result in schema.get_all_operations())


def test_schema_lists_every_contract_operation(api_schema: Any) -> None:
    assert CONTRACT_OPERATIONS <= set(operation_labels(api_schema))


def _fuzzer(
    label: str,
    strategy: Any,
    examples: int,
    auth: dict[str, str],
    session: requests.Session,
    base_url: str,
) -> Any:
    """A hypothesis test calling one operation with `examples` generated cases."""

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def call(case: Any) -> None:
        # Keep the key on every generated case (negative mode may mangle headers).
        case.headers = {**(case.headers or {}), **auth}
        try:
            response = case.call(base_url=base_url, session=session, timeout=CALL_TIMEOUT_S)
        except requests.Timeout:
            raise AssertionError(
                f"{label} hung for {CALL_TIMEOUT_S}s: {case.body!r:.300}"
            ) from None
        assert response.status_code < 500, (
            f"{label} -> {response.status_code}: {response.text[:300]}\n"
            f"reproduce: {case.as_curl_command()}"
        )

    return call


def _fuzz(
    api_schema: Any,
    auth: dict[str, str],
    session: requests.Session,
    base_url: str,
    mode: GenerationMode,
) -> None:
    failures: list[str] = []
    fuzzed = 0
    for label in operation_labels(api_schema):
        operation = api_schema.find_operation_by_label(label)
        strategy = operation.as_strategy(generation_mode=mode, headers=auth)
        call = _fuzzer(label, strategy, EXAMPLES[mode], auth, session, base_url)
        try:
            call()
            fuzzed += 1
        except Unsatisfiable:
            # Negative mode has nothing to violate in an operation without parameters/body.
            assert mode is GenerationMode.NEGATIVE, label
        except AssertionError as exc:  # collect all operations' failures, then report them
            failures.append(str(exc)[:1500])
    assert not failures, "\n\n".join(failures)
    assert fuzzed >= 3, f"only {fuzzed} operations could be fuzzed in {mode} mode"


def test_schema_conforming_requests_never_500(
    api_schema: Any, auth: dict[str, str], session: requests.Session, guarded_service: Any
) -> None:
    _fuzz(api_schema, auth, session, guarded_service.url, GenerationMode.POSITIVE)


def test_schema_violating_requests_never_500(
    api_schema: Any, auth: dict[str, str], session: requests.Session, guarded_service: Any
) -> None:
    _fuzz(api_schema, auth, session, guarded_service.url, GenerationMode.NEGATIVE)


def test_service_still_healthy_and_key_unlogged_after_fuzzing(
    guarded_service: Any, auth: dict[str, str]
) -> None:
    assert guarded_service.running, guarded_service.log_tail()
    assert requests.get(f"{guarded_service.url}/readyz", timeout=10).status_code == 200
    metrics = requests.get(f"{guarded_service.url}/metrics", headers=auth, timeout=10).text
    assert svc.metric_value(metrics, "ospo_requests_total", {"status": "500"}) == 0
    assert guarded_service.api_key not in guarded_service.log_text()
