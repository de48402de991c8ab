"""service/errors.py: the error tree (status and code of each kind) and the one envelope
builder. No module of the service writes an error body by hand: every `{"error": {...}}` is
error_envelope's."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from service.errors import (
    BackendError,
    InvalidRequest,
    NotFound,
    NotReady,
    OspoError,
    Overloaded,
    PayloadTooLarge,
    TooManyCoalitions,
    Unauthorized,
    UnknownQuery,
    UnknownRetriever,
    UnknownRewardModel,
    error_envelope,
)

SERVICE = Path(__file__).resolve().parents[1] / "service"


def test_the_envelope_has_code_message_and_field() -> None:
    assert error_envelope("invalid_request", "bad k", "options.k") == {
        "error": {"code": "invalid_request", "message": "bad k", "field": "options.k"}
    }
    assert error_envelope("not_found", "no route") == {
        "error": {"code": "not_found", "message": "no route", "field": None}
    }


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (OspoError("m"), 400, "bad_request"),
        (InvalidRequest("m"), 422, "invalid_request"),
        (TooManyCoalitions("m"), 422, "too_many_coalitions"),
        (PayloadTooLarge("m"), 413, "payload_too_large"),
        (Unauthorized("m"), 401, "unauthorized"),
        (NotFound("m"), 404, "not_found"),
        (UnknownRetriever("m"), 404, "unknown_retriever"),
        (UnknownQuery("m"), 404, "unknown_query"),
        (UnknownRewardModel("m"), 404, "unknown_reward_model"),
        (Overloaded("m"), 503, "overloaded"),
        (NotReady("m"), 503, "not_ready"),
        (BackendError("m"), 502, "backend_error"),
        (BackendError("m", timeout=True), 504, "backend_timeout"),
    ],
)
def test_each_error_has_its_status_and_code_and_leaves_as_the_envelope(
    error: OspoError, status: int, code: str
) -> None:
    error.field = "groups[0]"
    assert (error.status, error.code) == (status, code)
    assert error.to_dict() == error_envelope(code, "m", "groups[0]")


def test_headers_say_how_to_retry_or_authenticate() -> None:
    assert Overloaded("m", retry_after_s=2.5).headers() == {"Retry-After": "2"}
    assert Overloaded("m", retry_after_s=0.1).headers() == {"Retry-After": "1"}  # never 0
    assert Unauthorized("m").headers() == {"WWW-Authenticate": "Bearer"}
    assert InvalidRequest("m").headers() == {}


def _hand_made_envelopes(path: Path) -> list[int]:
    """Lines of dict literals {"error": {..., "code": ...}} in a module."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if not isinstance(node, ast.Dict):
            continue
        for key, value in zip(node.keys, node.values, strict=True):
            if (
                isinstance(key, ast.Constant)
                and key.value == "error"
                and isinstance(value, ast.Dict)
                and any(isinstance(k, ast.Constant) and k.value == "code" for k in value.keys)
            ):
                lines.append(node.lineno)
    return lines


def test_no_module_builds_an_error_body_by_hand(tmp_path: Path) -> None:
    found = {
        str(path.relative_to(SERVICE.parent)): lines
        for path in sorted(SERVICE.rglob("*.py"))
        if path.name != "errors.py" and (lines := _hand_made_envelopes(path))
    }
    assert found == {}
    # The check sees one when there is one.
    sample = tmp_path / "handler.py"
    sample.write_text('def answer():\n    return {"error": {"code": "x", "message": "y"}}\n')
    assert _hand_made_envelopes(sample) == [2]


def test_retrieval_errors_belong_to_the_one_tree() -> None:
    from service.errors import ResourceError
    from service.retrieval.catalog import CatalogError
    from service.retrieval.encoder import EncoderLoadError
    from service.retrieval.index import IndexBuildError, IndexLoadError, IndexMismatchError
    from service.retrieval.onnx_export import EncoderExportError
    from service.retrieval.registry import UnknownRetrieverError

    for kind in (
        CatalogError,
        EncoderLoadError,
        IndexLoadError,
        IndexMismatchError,
        IndexBuildError,
        EncoderExportError,
    ):
        error = kind("one line")
        assert isinstance(error, ResourceError) and error.to_dict()["error"]["code"] == (
            "resource_error"
        )
    unknown = UnknownRetrieverError("nope", ["default"])
    assert isinstance(unknown, UnknownRetriever) and isinstance(unknown, LookupError)
    assert unknown.status == 404 and "nope" in unknown.message
