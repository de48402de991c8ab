"""The demo catalog generator: determinism, sizes, label grades that agree with the product text."""

from __future__ import annotations

from collections import Counter

from service.retrieval.catalog import Catalog
from service.retrieval.demo import (
    CATEGORIES,
    COMPLEMENT_GAIN,
    EXACT_GAIN,
    SUBSTITUTE_GAIN,
    build_demo_catalog,
    specific_query,
)

_CATEGORY_NOUNS = {spec.key: spec.noun for spec in CATEGORIES}


def test_same_seed_same_catalog(demo_catalog: Catalog) -> None:
    again = build_demo_catalog(seed=0)
    assert again.fingerprint() == demo_catalog.fingerprint()
    assert again.queries == demo_catalog.queries
    assert again.labels == demo_catalog.labels
    assert again.split == demo_catalog.split
    other = build_demo_catalog(seed=1)
    assert other.fingerprint() != demo_catalog.fingerprint()
    assert other.queries != demo_catalog.queries


def test_sizes_and_ids(demo_catalog: Catalog) -> None:
    assert 2000 <= len(demo_catalog.products) <= 5000
    assert len(demo_catalog.queries) >= 200
    assert len(CATEGORIES) >= 12
    ids = [p.id for p in demo_catalog.products]
    assert len(set(ids)) == len(ids)
    assert all(qid.startswith("demo-") and len(qid) == 9 for qid in demo_catalog.queries)
    assert set(demo_catalog.labels) == set(demo_catalog.queries)
    counts = Counter(attrs["category"] for attrs in demo_catalog.query_attributes.values())
    assert len(counts) == len(CATEGORIES)


def test_split_is_a_held_out_fifth(demo_catalog: Catalog) -> None:
    splits = Counter(demo_catalog.split.values())
    assert set(splits) == {"train", "test"}
    assert abs(splits["test"] / len(demo_catalog.queries) - 0.2) < 0.02
    assert set(demo_catalog.split) == set(demo_catalog.queries)


def test_every_query_has_exact_substitute_and_graded_gains(demo_catalog: Catalog) -> None:
    for qid, gains in demo_catalog.labels.items():
        grades = Counter(gains.values())
        assert set(grades) <= {EXACT_GAIN, SUBSTITUTE_GAIN, COMPLEMENT_GAIN}
        assert grades[EXACT_GAIN] >= 3, qid
        assert grades[SUBSTITUTE_GAIN] > grades[EXACT_GAIN], qid
    with_complements = sum(
        COMPLEMENT_GAIN in gains.values() for gains in demo_catalog.labels.values()
    )
    assert with_complements > len(demo_catalog.labels) // 2


def test_exact_products_show_every_target_attribute(demo_catalog: Catalog) -> None:
    for qid in list(demo_catalog.queries)[::7]:
        target = demo_catalog.query_attributes[qid]
        exact = [pid for pid, gain in demo_catalog.labels[qid].items() if gain == EXACT_GAIN]
        for pid in exact:
            product = demo_catalog.product(pid)
            assert product is not None
            passage = product.passage().lower()
            assert _CATEGORY_NOUNS[target["category"]] in passage
            for key, value in target.items():
                if key == "gender":
                    assert value in passage or f"for {value.rstrip(chr(39) + 's')}" in passage
                elif key != "category":
                    assert value.lower() in passage, (qid, pid, key, value)


def test_substitutes_share_the_category_and_miss_something(demo_catalog: Catalog) -> None:
    qid = next(iter(demo_catalog.queries))
    target = demo_catalog.query_attributes[qid]
    noun = _CATEGORY_NOUNS[target["category"]]
    for pid, gain in demo_catalog.labels[qid].items():
        product = demo_catalog.product(pid)
        assert product is not None
        in_category = noun in product.title.lower()
        assert in_category == (gain != COMPLEMENT_GAIN), (pid, gain)


def test_requests_are_vague_but_specific_query_names_the_target(demo_catalog: Catalog) -> None:
    naming_the_noun = 0
    for qid, text in demo_catalog.queries.items():
        target = demo_catalog.query_attributes[qid]
        noun = _CATEGORY_NOUNS[target["category"]]
        naming_the_noun += noun in text.lower()
        precise = specific_query(target)
        assert noun in precise
        assert all(value in precise for key, value in target.items() if key != "category")
    # Requests describe a use ("something sturdy for mountain trails"), rarely the product noun.
    assert naming_the_noun < len(demo_catalog.queries) // 4
    assert (
        specific_query(
            {
                "category": "hiking-boots",
                "gender": "women's",
                "colour": "black",
                "feature": "waterproof",
            }
        )
        == "women's black hiking boots waterproof"
    )
