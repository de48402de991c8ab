"""service/engine/services.py: building the engine's services from Settings (CPU threads)."""

from __future__ import annotations


def test_cpu_threads_setting_caps_torch_and_faiss(monkeypatch) -> None:
    import faiss
    import torch

    from service.config import Settings
    from service.engine.services import set_cpu_threads

    monkeypatch.setenv("OSPO_CPU_THREADS", "1")
    assert Settings().cpu_threads == 1
    before = torch.get_num_threads()
    try:
        set_cpu_threads(1)
        assert torch.get_num_threads() == 1
        assert faiss.omp_get_max_threads() == 1
    finally:
        torch.set_num_threads(before)
        faiss.omp_set_num_threads(before)
