"""Loading: `import verl` loads the plug-in through the `verl.plugins` entry point (or
VERL_USE_EXTERNAL_MODULES), which registers the `ospo` estimator with verl's registry once
`core_algos` loads and the `ospo_*` trainer modes once `verl.trainer.ppo.v1` loads, never
importing verl's trainer into a process that does not (fresh interpreters)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PROBE = """
import json, sys
import verl
loaded = "trainer_client.verl.plugin" in sys.modules
lazy = "verl.trainer.ppo.v1" not in sys.modules and "trainer_client.verl.trainer" not in sys.modules
from verl.trainer.ppo.core_algos import get_adv_estimator_fn
from trainer_client.verl.estimator import ospo_advantage
estimator = get_adv_estimator_fn("ospo") is ospo_advantage
from verl.trainer.ppo.v1 import get_trainer_cls
modes = [get_trainer_cls(m).__name__ for m in ("ospo_sync", "ospo_colocate_async", "ospo_separate_async")]
print(json.dumps({"loaded": loaded, "lazy": lazy, "estimator": estimator, "modes": modes}))
"""


def probe(**env: str) -> dict[str, object]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("VERL_USE_EXTERNAL")}
    environ.update(env)
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", PROBE],
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


EXPECTED = {
    "loaded": True,
    "lazy": True,
    "estimator": True,
    "modes": ["OspoPPOTrainerSync", "OspoPPOTrainerColocateAsync", "OspoPPOTrainerSeparateAsync"],
}


def test_import_verl_loads_the_plugin_through_its_entry_point(verl_modules):
    assert probe() == EXPECTED


def test_verl_use_external_modules_loads_it_without_the_entry_point(verl_modules):
    found = probe(
        VERL_USE_EXTERNAL_PLUGINS="none",
        VERL_USE_EXTERNAL_MODULES="trainer_client.verl.plugin",
    )
    assert found == EXPECTED


def test_install_is_idempotent(verl_modules):
    from trainer_client.verl import plugin

    plugin.install()
    plugin.install()
    finders = [f for f in sys.meta_path if plugin.CORE_ALGOS in getattr(f, "modules", frozenset())]
    assert len(finders) == 1
    v1, core_algos = verl_modules
    assert core_algos.get_adv_estimator_fn("ospo").__module__ == "trainer_client.verl.estimator"
    assert v1.get_trainer_cls("ospo_sync").base_mode == "sync"


@pytest.mark.parametrize("mode", ["ospo_sync", "ospo_colocate_async", "ospo_separate_async"])
def test_each_mode_extends_the_verl_mode_it_names(verl_modules, mode):
    from trainer_client.verl import TRAINER_MODES

    v1, _ = verl_modules
    cls = v1.get_trainer_cls(mode)
    assert cls.base_mode == TRAINER_MODES[mode]
    assert issubclass(cls, v1.get_trainer_cls(TRAINER_MODES[mode]))
