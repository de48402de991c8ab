"""service/engine/limits.py: the request checks beyond the schema (property-based offsets
checks, defaults under stricter limits)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.engine.limits import Limits, check_group, validate_request
from service.errors import InvalidRequest
from service.schemas import AttributeRequest


def request_with(text: str, offsets: list[tuple[int, int]]) -> AttributeRequest:
    return AttributeRequest.model_validate(
        {
            "groups": [
                {
                    "target": {"query_id": "q"},
                    "responses": [{"text": text, "token_offsets": offsets}],
                }
            ]
        }
    )


def offsets_are_valid(text: str, offsets: list[tuple[int, int]]) -> bool:
    end_so_far = 0
    for start, end in offsets:
        if start > end or end > len(text):
            return False
        if start == end:
            continue
        if start < end_so_far:
            return False
        end_so_far = end
    return True


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(max_size=30),
    offsets=st.lists(st.tuples(st.integers(0, 35), st.integers(0, 35)), max_size=8),
)
def test_offsets_are_accepted_exactly_when_sorted_disjoint_and_inside(text, offsets):
    request = request_with(text, offsets)
    validate_request(request, Limits())  # request-wide checks; offsets are a group's
    if offsets_are_valid(text, offsets):
        check_group(0, request.groups[0], Limits())
    else:
        with pytest.raises(InvalidRequest) as info:
            check_group(0, request.groups[0], Limits())
        assert info.value.field.startswith("groups[0].responses[0].token_offsets[")


def test_word_offsets_of_any_text_are_valid():
    text = "<answer>red   boots, size 8</answer>\u00e9\U0001f600"
    offsets = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)] + [
        (0, 0),
        (len(text), len(text)),
    ]
    request = request_with(text, offsets)
    validate_request(request, Limits())
    check_group(0, request.groups[0], Limits())


def test_defaults_fit_stricter_limits_but_explicit_values_do_not():
    request = AttributeRequest.model_validate(
        {"groups": [{"target": {"query_id": "q"}, "responses": [{"text": "a"}]}]}
    )
    validate_request(request, Limits(max_k=100, max_coalitions_limit=50))
    assert request.options.k == 100 and request.options.max_coalitions == 50
    explicit = AttributeRequest.model_validate(
        {
            "groups": [{"target": {"query_id": "q"}, "responses": [{"text": "a"}]}],
            "options": {"k": 1000},
        }
    )
    with pytest.raises(InvalidRequest, match="max_k=100"):
        validate_request(explicit, Limits(max_k=100))
