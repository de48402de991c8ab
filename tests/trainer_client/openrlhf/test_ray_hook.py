"""The launcher against a real (local, one-CPU) Ray cluster: the runtime_env it starts Ray
with ships trainer_client to the workers, runs the setup hook there without importing
OpenRLHF, deepspeed or vLLM, and the hook patches OpenRLHF's classes when a worker imports
them.

Ray runs in a child process: its driver leaves open files and process handles behind that
would otherwise surface as unraisable-exception warnings in this session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.openrlhf

DRIVER = r'''
import json, os, sys
import ray
from trainer_client.openrlhf import launch

STUBS = sys.argv[1]


def worker_view(stubs_path):
    """Runs inside a Ray worker: what the setup hook left, then OpenRLHF imported there."""
    import importlib.util
    import os
    import sys

    import trainer_client
    from trainer_client.openrlhf import patch

    # Not torch: Ray itself imports it in every worker under OpenRLHF's
    # RAY_ENABLE_ZERO_COPY_TORCH_TENSORS=1, which the launcher keeps.
    heavy = ("openrlhf", "deepspeed", "vllm", "transformers", "flash_attn")
    before = sorted(name for name in heavy if name in sys.modules)
    installed = patch.is_installed()
    spec = importlib.util.spec_from_file_location("_ospo_stubs_in_worker", stubs_path)
    stubs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stubs)
    maker = stubs.import_experience_maker().RemoteExperienceMaker
    trainer = stubs.import_with_stubs("openrlhf.trainer.ppo_trainer").BasePPOTrainer
    return {
        "file": trainer_client.__file__,
        "installed": installed,
        "before": before,
        "maker_wrapped": getattr(maker.compute_advantages_and_returns, "__ospo_wrapped__", False),
        "trainer_wrapped": getattr(trainer.train_step, "__ospo_wrapped__", False),
        "url": os.environ.get("OSPO_ATTRIBUTE_URL"),
        "redistribution": os.environ.get("OSPO_REDISTRIBUTION"),
    }


report = {}


def start(env):
    report["runtime_env"] = env
    ray.init(runtime_env=env, address="local", num_cpus=1, include_dashboard=False)


def run(argv):
    report["worker"] = ray.get(ray.remote(worker_view).remote(STUBS), timeout=300)


try:
    report["status"] = launch.main(sys.argv[2:], ray_init=start, run=run)
finally:
    ray.shutdown()
print("REPORT " + json.dumps(report))
'''


def test_the_setup_hook_patches_lazily_in_real_ray_workers(tmp_path, openrlhf_stubs):
    pytest.importorskip("ray")
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OSPO_", "RAY_ADDRESS"))}
    env["RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO"] = "0"  # silences a Ray FutureWarning
    argv = [
        "--algo.advantage.estimator",
        "group_norm",
        "--data.label_key",
        "label",
        "--algo.kl.use_loss",
        "--ospo.url",
        "http://ospo.test:8000",
        "--ospo.redistribution",
        "rank",
    ]
    done = subprocess.run(
        [sys.executable, str(script), str(Path(openrlhf_stubs.__file__)), *argv],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("REPORT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    report = json.loads(lines[-1].removeprefix("REPORT "))
    assert report["status"] == 0
    env_given = report["runtime_env"]
    assert env_given["worker_process_setup_hook"] == "trainer_client.openrlhf_plugin.install"
    worker = report["worker"]
    # the worker imported the copy Ray shipped (py_modules), not this checkout's
    assert "py_modules_files" in worker["file"]
    assert worker["installed"] and worker["before"] == []
    assert worker["maker_wrapped"] and worker["trainer_wrapped"]
    assert (worker["url"], worker["redistribution"]) == ("http://ospo.test:8000", "rank")
