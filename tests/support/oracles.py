"""Oracles and real inputs for the attribution tests: the permutation-enumeration Shapley
oracle, a partition checker for segmenters, and the real shopping queries from ../shared/data.

Fixtures: `shapley_oracle`, `assert_partition`, `real_queries`.
"""

from __future__ import annotations

import csv
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"  # next to the repo


def shapley_by_permutations(n: int, v: Mapping[frozenset[int], float]) -> np.ndarray:
    """Exact Shapley value as the average marginal contribution over all n! orders."""
    phi = np.zeros(n)
    for order in itertools.permutations(range(n)):
        members: frozenset[int] = frozenset()
        for player in order:
            grown = members | {player}
            phi[player] += v.get(grown, 0.0) - v.get(members, 0.0)
            members = grown
    return phi / math.factorial(n)


def check_partition(text: str, spans: Sequence[tuple[int, int]]) -> None:
    """Spans sorted, disjoint, non-empty, trimmed, and covering every non-whitespace char."""
    previous_end = 0
    covered = []
    for start, end in spans:
        assert previous_end <= start < end <= len(text), (spans, text)
        assert not text[start].isspace() and not text[end - 1].isspace(), (start, end, text)
        covered.extend(range(start, end))
        previous_end = end
    wanted = [i for i, ch in enumerate(text) if not ch.isspace()]
    assert set(wanted) <= set(covered), (text, spans)


def _read_queries(path: Path) -> list[str]:
    with path.open(encoding="utf-8", newline="") as handle:
        rows = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        return list(dict.fromkeys(row["query"] for row in rows))


@pytest.fixture(scope="session")
def shapley_oracle() -> Callable[[int, Mapping[frozenset[int], float]], np.ndarray]:
    return shapley_by_permutations


@pytest.fixture(scope="session")
def assert_partition() -> Callable[[str, Sequence[tuple[int, int]]], None]:
    return check_partition


@pytest.fixture(scope="session")
def real_queries() -> list[str]:
    esci = SHARED_DATA / "esci_us_judgments" / "judgments.tsv"
    wands = SHARED_DATA / "wands_queries" / "query.tsv"
    if not (esci.is_file() and wands.is_file()):
        pytest.skip(f"shared test data not found under {SHARED_DATA}")
    queries = _read_queries(esci) + _read_queries(wands)
    assert len(queries) > 600  # 150 ESCI + 480 WANDS, so a broken reader cannot pass silently
    return queries
