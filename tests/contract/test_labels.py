"""One label grammar: the service's parser (service.engine.targets.parse_label) and the trainer
client's (trainer_client._labels.parse_label) give identical targets and pools, or identical
errors (message and field), for every label in one table: catalog query ids (str, int,
whitespace), graded labels with and without a pool, as JSON strings and as objects (dicts, as
OpenRLHF passes them), gains at and outside (0, 100], and malformed labels. Each row also
says what the answer must be, so both parsers cannot drift together either."""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from types import MappingProxyType
from typing import Any

import pytest

from service.engine.targets import parse_label as service_parse
from service.errors import InvalidRequest
from trainer_client._labels import LabelError
from trainer_client._labels import parse_label as client_parse

FIELD = "labels[3]"


def ok(
    query_id: str | None = None,
    relevant: dict[str, float] | None = None,
    pool: tuple[str, ...] | None = None,
) -> tuple[Any, ...]:
    return ("ok", query_id, relevant, pool)


def error(field: str = FIELD) -> tuple[Any, ...]:
    return ("error", field)


# (label, what it must parse to); an error row names the field at fault.
TABLE: list[tuple[str, Any, tuple[Any, ...]]] = [
    # catalog query ids
    ("query-id", "demo-0000", ok(query_id="demo-0000")),
    ("query-id-whitespace", "  demo-0000 \n", ok(query_id="demo-0000")),
    ("query-id-int", 12345, ok(query_id="12345")),
    ("query-id-int-zero", 0, ok(query_id="0")),
    ("query-id-numeric-str", "12345", ok(query_id="12345")),
    ("query-id-looks-like-a-list", '["P1"]', ok(query_id='["P1"]')),
    ("structured-query-id-str", '{"query_id": "demo-0001"}', ok(query_id="demo-0001")),
    ("structured-query-id-dict", {"query_id": "demo-0001"}, ok(query_id="demo-0001")),
    ("structured-query-id-int", {"query_id": 42}, ok(query_id="42")),
    ("structured-query-id-trimmed", {"query_id": "  q7 "}, ok(query_id="q7")),
    ("json-whitespace", '  \n{"query_id": "q"}\t ', ok(query_id="q")),
    # graded labels
    ("graded-json-str", '{"P1": 1, "P2": 2.5}', ok(relevant={"P1": 1.0, "P2": 2.5})),
    ("graded-dict", {"P1": 3}, ok(relevant={"P1": 3.0})),
    (
        "graded-ordered-dict",
        OrderedDict([("P2", 1), ("P1", 2)]),
        ok(relevant={"P2": 1.0, "P1": 2.0}),
    ),
    ("graded-mapping-proxy", MappingProxyType({"P1": 1.0}), ok(relevant={"P1": 1.0})),
    ("graded-int-key", {1: 1.0}, ok(relevant={"1": 1.0})),
    ("relevant-dict", {"relevant": {"P1": 1, "P2": 0.5}}, ok(relevant={"P1": 1.0, "P2": 0.5})),
    ("relevant-str", '{"relevant": {"P1": 1}}', ok(relevant={"P1": 1.0})),
    # with a pool
    (
        "query-id-pool",
        {"query_id": "q", "pool": ["P1", "P2"]},
        ok(query_id="q", pool=("P1", "P2")),
    ),
    (
        "relevant-pool-str",
        '{"relevant": {"P1": 1}, "pool": ["P1", "P9"]}',
        ok(relevant={"P1": 1.0}, pool=("P1", "P9")),
    ),
    (
        "pool-repeats-kept",
        {"query_id": "q", "pool": ["P1", "P1"]},
        ok(query_id="q", pool=("P1", "P1")),
    ),
    # gains at and outside (0, 100]
    ("gain-100", {"P1": 100}, ok(relevant={"P1": 100.0})),
    ("gain-100.0", {"P1": 100.0}, ok(relevant={"P1": 100.0})),
    ("gain-tiny", {"P1": 1e-9}, ok(relevant={"P1": 1e-9})),
    ("gain-over-100", {"P1": 100.0001}, error()),
    ("gain-over-100-relevant", {"relevant": {"P1": 101}}, error(f"{FIELD}.relevant")),
    ("gain-zero", {"P1": 0}, error()),
    ("gain-zero-float", '{"P1": 0.0}', error()),
    ("gain-negative", {"P1": -1}, error()),
    ("gain-nan-json", '{"P1": NaN}', error()),
    ("gain-nan-float", {"P1": math.nan}, error()),
    ("gain-infinity-json", '{"P1": Infinity}', error()),
    ("gain-huge", {"P1": 1e308}, error()),
    ("gain-bool-true", {"P1": True}, error()),
    ("gain-bool-false", {"relevant": {"P1": False}}, error(f"{FIELD}.relevant")),
    ("gain-string", {"P1": "1"}, error()),
    ("gain-null", '{"P1": null}', error()),
    ("gain-object", {"relevant": {"P1": {"gain": 1}}}, error(f"{FIELD}.relevant")),
    # pools: empty, not a list, not strings
    ("pool-empty", {"query_id": "q", "pool": []}, error(f"{FIELD}.pool")),
    ("pool-str", {"query_id": "q", "pool": "P1"}, error(f"{FIELD}.pool")),
    ("pool-null", '{"relevant": {"P1": 1}, "pool": null}', error(f"{FIELD}.pool")),
    ("pool-ints", {"query_id": "q", "pool": [1, 2]}, error(f"{FIELD}.pool")),
    ("pool-empty-id", {"query_id": "q", "pool": ["P1", ""]}, error(f"{FIELD}.pool")),
    ("pool-tuple", {"query_id": "q", "pool": ("P1",)}, error(f"{FIELD}.pool")),
    ("pool-only", {"pool": ["P1"]}, error()),
    # unknown keys, both query_id and relevant
    ("unknown-key", {"query_id": "q", "extra": 1}, error()),
    ("unknown-key-str", '{"relevant": {"P1": 1}, "k": 10}', error()),
    ("both-kinds", {"query_id": "q", "relevant": {"P1": 1}}, error()),
    ("both-kinds-str", '{"query_id": "q", "relevant": {"P1": 1}, "pool": ["P1"]}', error()),
    # malformed
    ("missing-none", None, error()),
    ("missing-empty", "", error()),
    ("missing-whitespace", " \t\n", error()),
    ("bool-true", True, error()),
    ("bool-false", False, error()),
    ("float", 1.5, error()),
    ("list", ["demo-0000"], error()),
    ("bytes", b"demo-0000", error()),
    ("bad-json", '{"P1": 1', error()),
    ("bad-json-single-quotes", "{'query_id': 'q'}", error()),
    ("empty-object", "{}", error()),
    ("empty-dict", {}, error()),
    ("relevant-empty", {"relevant": {}}, error(f"{FIELD}.relevant")),
    ("relevant-list", {"relevant": ["P1"]}, error(f"{FIELD}.relevant")),
    ("query-id-empty", {"query_id": ""}, error(f"{FIELD}.query_id")),
    ("query-id-blank", '{"query_id": "   "}', error(f"{FIELD}.query_id")),
    ("query-id-bool", {"query_id": True}, error(f"{FIELD}.query_id")),
    ("query-id-null", '{"query_id": null}', error(f"{FIELD}.query_id")),
    ("query-id-list", {"query_id": ["q"]}, error(f"{FIELD}.query_id")),
]


def outcome(parse: Any, errors: type[Exception], label: Any) -> tuple[Any, ...]:
    """("ok", query_id, relevant, pool) or ("error", field, message); any other exception
    (an AttributeError on a dict, say) propagates and fails the test."""
    try:
        parsed = parse(label, FIELD)
    except errors as exc:
        return ("error", exc.field, exc.message)  # type: ignore[attr-defined]
    relevant = None if parsed.relevant is None else dict(parsed.relevant)
    return ("ok", parsed.query_id, relevant, parsed.pool)


@pytest.mark.parametrize(
    ("label", "expected"), [row[1:] for row in TABLE], ids=[r[0] for r in TABLE]
)
def test_service_and_client_parse_every_label_identically(
    label: Any, expected: tuple[Any, ...]
) -> None:
    service = outcome(service_parse, InvalidRequest, label)
    client = outcome(client_parse, LabelError, label)
    assert service == client
    assert service[: len(expected)] == expected
    if service[0] == "error":
        assert service[2] and FIELD in service[2]  # the message names where the label was
    else:
        assert (service[1] is None) != (service[2] is None)  # exactly one kind of target
        for gain in (service[2] or {}).values():
            assert type(gain) is float


def test_the_table_covers_every_kind_of_label() -> None:
    kinds = {type(label) for _, label, _ in TABLE}
    assert {str, int, dict, OrderedDict, MappingProxyType, type(None), bool} <= kinds
    json_strings = [
        label for _, label, _ in TABLE if isinstance(label, str) and label.strip().startswith("{")
    ]
    assert len(json_strings) >= 10
    assert sum(1 for *_, expected in TABLE if expected[0] == "ok") >= 20
    assert sum(1 for *_, expected in TABLE if expected[0] == "error") >= 30


def test_a_dict_label_and_its_json_string_are_the_same_label() -> None:
    for _, label, expected in TABLE:
        if type(label) is dict and expected[0] == "ok" and all(isinstance(k, str) for k in label):
            text = json.dumps(label)
            assert outcome(service_parse, InvalidRequest, text) == outcome(
                service_parse, InvalidRequest, label
            )
            assert outcome(client_parse, LabelError, text) == outcome(
                client_parse, LabelError, label
            )


def test_the_default_field_is_label() -> None:
    with pytest.raises(InvalidRequest) as service:
        service_parse(None)
    with pytest.raises(LabelError) as client:
        client_parse(None)
    assert service.value.field == client.value.field == "label"
    assert service.value.message == client.value.message


def test_reward_accepts_a_dict_label_as_its_json_string(registry: Any, small_catalog: Any) -> None:
    """/reward's engine path takes OpenRLHF's dict labels, not only strings."""
    import asyncio

    from service.engine import AttributionEngine, EncodeBatcher
    from service.schemas import RewardRequest

    query_id = next(iter(small_catalog.labels))
    gains = dict(small_catalog.labels[query_id])
    text = small_catalog.queries[query_id]
    labels: list[Any] = [
        {"relevant": gains},
        json.dumps({"relevant": gains}),
        {"query_id": query_id},
        query_id,
    ]
    engine = AttributionEngine(registry, None, batcher=EncodeBatcher(window_s=0))
    request = RewardRequest(query=[text] * len(labels), labels=labels)
    rewards = asyncio.run(engine.reward(request, "default", 50)).rewards
    assert len(set(rewards)) == 1 and rewards[0] > 0


def test_the_client_builds_targets_from_dict_labels() -> None:
    from trainer_client import Target

    assert Target.from_label({"query_id": "q"}) == Target(query_id="q")
    assert Target.from_label({"relevant": {"P1": 2}}) == Target(relevant={"P1": 2.0})
    assert Target.from_label('{"P1": 2}') == Target(relevant={"P1": 2.0})
