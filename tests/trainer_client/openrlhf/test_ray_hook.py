"""The launcher against a real (local, one-CPU) Ray cluster: the runtime_env it starts Ray
with ships trainer_client to the workers, runs the setup hook there without importing
OpenRLHF, deepspeed or vLLM, and the hook patches OpenRLHF's classes when a worker imports
them."""

from __future__ import annotations

import os
from typing import Any

import pytest

from trainer_client.openrlhf import launch

pytestmark = pytest.mark.openrlhf


def test_the_setup_hook_patches_lazily_in_real_ray_workers(monkeypatch, openrlhf_stubs):
    ray = pytest.importorskip("ray")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # Ray's FutureWarning
    for key in list(os.environ):
        if key.startswith("OSPO_"):
            monkeypatch.delenv(key)
    # main() exports the OSPO_* settings to this process; monkeypatch restores them.
    monkeypatch.setenv("OSPO_ATTRIBUTE_URL", "placeholder")
    monkeypatch.setenv("OSPO_REDISTRIBUTION", "placeholder")
    reports: list[dict[str, Any]] = []
    started: list[dict[str, Any]] = []

    def start(env: dict[str, Any]) -> None:
        started.append(env)
        ray.init(
            runtime_env=env,
            address="local",
            num_cpus=1,
            include_dashboard=False,
            log_to_driver=False,
        )

    # Defined here, not at module level: Ray pickles a nested function by value, and the
    # workers cannot import this test module. No assert statements in it: pytest's rewrite
    # would make it reference pytest's own modules, which the worker would then import.
    def worker_view(stubs_path: str) -> dict[str, Any]:
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
        if spec is None or spec.loader is None:  # no assert: pytest would rewrite it
            raise ImportError(stubs_path)
        stubs = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(stubs)
        maker = stubs.import_experience_maker().RemoteExperienceMaker
        trainer = stubs.import_with_stubs("openrlhf.trainer.ppo_trainer").BasePPOTrainer
        return {
            "file": trainer_client.__file__,
            "installed": installed,
            "before": before,
            "maker_wrapped": getattr(
                maker.compute_advantages_and_returns, "__ospo_wrapped__", False
            ),
            "trainer_wrapped": getattr(trainer.train_step, "__ospo_wrapped__", False),
            "url": os.environ.get("OSPO_ATTRIBUTE_URL"),
            "redistribution": os.environ.get("OSPO_REDISTRIBUTION"),
        }

    def run(argv: list[str]) -> None:
        remote = ray.remote(worker_view)
        reports.append(ray.get(remote.remote(str(openrlhf_stubs.__file__)), timeout=300))

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
    try:
        status = launch.main(argv, ray_init=start, run=run)
    finally:
        ray.shutdown()
    assert status == 0
    (env,) = started
    assert env["worker_process_setup_hook"] == "trainer_client.openrlhf_plugin.install"
    (report,) = reports
    # the worker imported the copy Ray shipped (py_modules), not this checkout's
    assert "py_modules_files" in report["file"]
    assert report["installed"] and report["before"] == []
    assert report["maker_wrapped"] and report["trainer_wrapped"]
    assert (report["url"], report["redistribution"]) == ("http://ospo.test:8000", "rank")
