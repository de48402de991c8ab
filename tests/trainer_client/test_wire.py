"""The wire format's pure parts: batch splitting."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from trainer_client._wire import split_groups


@given(st.integers(0, 40), st.integers(1, 9))
def test_split_groups_keeps_order_and_bounds(n, size):
    items = list(range(n))
    chunks: list[list[Any]] = split_groups(items, size)  # type: ignore[arg-type]
    assert [x for chunk in chunks for x in chunk] == items
    assert all(1 <= len(chunk) <= size for chunk in chunks)
