"""The one conftest: registers the shared fixtures (tests/support) and holds the collection
hooks. Hugging Face stays offline for the whole session: every model the tests load is
packaged."""

from __future__ import annotations

import os

for _name, _value in (
    ("HF_HUB_OFFLINE", "1"),
    ("TRANSFORMERS_OFFLINE", "1"),
    ("TOKENIZERS_PARALLELISM", "false"),
):
    os.environ.setdefault(_name, _value)

import pytest  # noqa: E402

# The support modules import each other: have their asserts rewritten before the first import.
pytest.register_assert_rewrite("tests.support")

from tests.support.redis_servers import REDIS_FIXTURES  # noqa: E402

pytest_plugins = [
    "tests.support.data",
    "tests.support.registries",
    "tests.support.app",
    "tests.support.server",
    "tests.support.service_process",
    "tests.support.redis_servers",
    "tests.support.reward_server",
    "tests.support.tokenizers",
    "tests.support.oracles",
    "tests.support.browser",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A test that uses a Redis fixture is a `redis` test (`-m "not redis"` deselects it).
    for item in items:
        if REDIS_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.redis)
