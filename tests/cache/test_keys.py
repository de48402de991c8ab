"""cache_key: format, determinism, and that every field (and every field boundary) matters."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.cache import KEY_PREFIX, cache_key

BASE: dict[str, Any] = {
    "retriever": "default",
    "encoder": "all-MiniLM-L6-v2",
    "index_version": "3f2a9c",
    "k": 10,
    "target": "q-17",
    "pool": "",
    "query": "red running shoes",
}
TEXT_FIELDS = ["retriever", "encoder", "index_version", "target", "pool", "query"]
ORDERED_FIELDS = ["retriever", "encoder", "index_version", "k", "target", "pool", "query"]

fields_strategy = st.fixed_dictionaries(
    {
        **{name: st.text(max_size=12) for name in TEXT_FIELDS},
        "k": st.integers(min_value=0, max_value=10_000),
    }
)


def test_format_is_prefix_plus_sha256_hex() -> None:
    key = cache_key(**BASE)
    assert key.startswith(KEY_PREFIX)
    assert KEY_PREFIX == "ospo:v1:"
    assert re.fullmatch(r"[0-9a-f]{64}", key[len(KEY_PREFIX) :])


def test_same_fields_same_key() -> None:
    assert cache_key(**BASE) == cache_key(**dict(BASE))


@pytest.mark.parametrize("field", ORDERED_FIELDS)
def test_changing_any_field_changes_the_key(field: str) -> None:
    changed = dict(BASE)
    changed[field] = BASE[field] + 1 if field == "k" else BASE[field] + "x"
    assert cache_key(**changed) != cache_key(**BASE)


@pytest.mark.parametrize("index", range(len(ORDERED_FIELDS) - 1))
def test_text_cannot_bleed_across_a_field_boundary(index: int) -> None:
    # Moving one character from a field into its neighbour keeps the concatenation equal.
    left, right = ORDERED_FIELDS[index], ORDERED_FIELDS[index + 1]
    a: dict[str, Any] = {name: "ab" for name in TEXT_FIELDS} | {"k": 12}
    b = dict(a)
    if left == "k":
        b["k"], b[right] = 1, "2" + a[right]
    elif right == "k":
        b[left], b["k"] = a[left] + "1", 2
    else:
        b[left], b[right] = a[left] + "a", a[right][1:]
    flat_a = "".join(str(a[name]) for name in ORDERED_FIELDS)
    flat_b = "".join(str(b[name]) for name in ORDERED_FIELDS)
    assert flat_a == flat_b
    assert cache_key(**a) != cache_key(**b)


@given(fields_strategy, fields_strategy)
def test_different_fields_give_different_keys(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert (cache_key(**a) == cache_key(**b)) == (a == b)


@given(fields_strategy, st.sampled_from(TEXT_FIELDS), st.text(min_size=1, max_size=4))
def test_appending_to_one_field_changes_the_key(
    fields: dict[str, Any], field: str, suffix: str
) -> None:
    changed = dict(fields)
    changed[field] = fields[field] + suffix
    assert cache_key(**changed) != cache_key(**fields)


def test_non_ascii_and_lone_surrogates_are_keyed() -> None:
    assert cache_key(**BASE | {"query": "Größe 42 ☂"}) != cache_key(**BASE | {"query": "Grosse 42"})
    # A lone surrogate can arrive from JSON (\ud800); it must key, not crash.
    assert cache_key(**BASE | {"query": "\ud800"}).startswith(KEY_PREFIX)
