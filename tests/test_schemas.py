"""service/schemas.py: the request models refuse what API.md refuses before any work."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from service.schemas import AttributeRequest


@pytest.mark.parametrize(
    "target",
    [
        {"reward_model": "sentiment", "query_id": "demo-0000"},
        {"reward_model": "sentiment", "relevant": {"P1": 1.0}},
        {"query_id": "demo-0000", "label": "positive"},
        {},
    ],
)
def test_target_needs_exactly_one_kind(target):
    with pytest.raises(ValidationError):
        AttributeRequest.model_validate(
            {"groups": [{"target": target, "prompt": "", "responses": [{"text": "x"}]}]}
        )
