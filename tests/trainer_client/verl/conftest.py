"""Fixtures for the verl plug-in tests: verl 0.9.1's own config (Hydra compose of
``ppo_trainer.yaml``), its real v1 trainer classes, and an in-memory stand-in for
TransferQueue.

The stand-in replaces the Ray-actor storage only: per-key fields are stored as verl's agent
loop puts them, and a batch is packed for ``kv_batch_get`` by TransferQueue's own
``AsyncSimpleStorageManager._pack_field_values`` (jagged nested tensors, ``NonTensorStack``), so the
trainer code under test sees the structures the real TransferQueue returns.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Sequence
from typing import Any

import pytest


def require_verl() -> None:
    """Skip without verl, except under CI=true where a missing stack is a failure."""
    if os.environ.get("CI", "").lower() == "true":
        importlib.import_module("verl")
    else:
        pytest.importorskip("verl", reason="verl 0.9.1 is not installed (make install)")


class InMemoryTransferQueue:
    """``kv_batch_get``/``kv_batch_put`` of ``transfer_queue`` over a dict (see module doc)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], dict[str, Any]] = {}

    def put_row(self, key: str, fields: dict[str, Any], partition_id: str = "train") -> None:
        self.rows.setdefault((partition_id, key), {}).update(fields)

    def kv_batch_get(
        self, keys: Sequence[str], partition_id: str, select_fields: Sequence[str] | None = None
    ) -> Any:
        from tensordict import TensorDict
        from transfer_queue.storage.managers.simple_storage_manager import (
            AsyncSimpleStorageManager,
        )

        rows = [self.rows[(partition_id, key)] for key in keys]
        names = list(select_fields) if select_fields is not None else list(rows[0])
        # as the real one: a selected field that no sample holds is left out
        present = [n for n in names if all(n in row for row in rows)]
        packed = {
            n: AsyncSimpleStorageManager._pack_field_values([r[n] for r in rows]) for n in present
        }
        return TensorDict(packed, batch_size=len(keys))

    def kv_batch_put(
        self, keys: Sequence[str], partition_id: str, fields: Any = None, tags: Any = None
    ) -> Any:
        from transfer_queue import KVBatchMeta

        from trainer_client.verl.rollouts import rows_of

        for name in list(fields.keys()) if fields is not None else []:
            for key, value in zip(keys, rows_of(fields[name]), strict=True):
                self.put_row(key, {name: value}, partition_id)
        return KVBatchMeta(keys=list(keys), tags=[{} for _ in keys], partition_id=partition_id)


@pytest.fixture(scope="session")
def verl_modules() -> Any:
    """verl's v1 trainer package, with the plug-in's registrations in place."""
    require_verl()
    import verl.trainer.ppo.core_algos as core_algos
    import verl.trainer.ppo.v1 as v1

    from trainer_client.verl import plugin

    plugin.install()  # a no-op when the entry point already ran at `import verl`
    return v1, core_algos


@pytest.fixture(scope="session")
def compose(verl_modules: Any) -> Callable[..., Any]:
    """``compose(*overrides)``: verl's ``ppo_trainer`` config, as its Hydra main builds it."""
    import verl.trainer
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    directory = os.path.join(os.path.dirname(verl.trainer.__file__), "config")

    def make(*overrides: str) -> Any:
        with initialize_config_dir(config_dir=directory, version_base=None):
            return hydra_compose(config_name="ppo_trainer", overrides=list(overrides))

    return make


@pytest.fixture
def tq(verl_modules: Any, monkeypatch: pytest.MonkeyPatch) -> InMemoryTransferQueue:
    """The stand-in, installed where verl's trainer (and the plug-in) look TransferQueue up."""
    from verl.trainer.ppo.v1 import trainer_base

    queue = InMemoryTransferQueue()
    monkeypatch.setattr(trainer_base, "tq", queue)
    return queue
