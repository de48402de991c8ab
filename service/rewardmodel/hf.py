"""An in-process Hugging Face reward model: AutoModelForSequenceClassification by hub name
or local path, the first logit of (prompt + response) as the score.

Loading happens once, on the caller's thread (the app's lifespan runs it on a worker thread);
scoring runs batched under `torch.inference_mode` on a worker thread, one forward pass at a
time per model (torch parallelises inside a pass; two passes would only fight for cores).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import numpy as np

from service.rewardmodel.base import RewardModelError
from service.rewardmodel.spec import RewardModelSpec

logger = logging.getLogger(__name__)

# Tokenizers without a real limit report a huge sentinel model_max_length.
FALLBACK_MAX_LENGTH = 512
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


class HFRewardModel:
    """A sequence-classification model scoring texts with its first logit."""

    backend = "hf"

    def __init__(self, spec: RewardModelSpec) -> None:
        if spec.model is None:
            raise ValueError(f"reward model {spec.name!r} has no model")
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.spec = spec
        self.source: str = spec.model
        self._torch = torch
        self._lock = threading.Lock()
        self.device = spec.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(self.source)
        model = AutoModelForSequenceClassification.from_pretrained(self.source)
        model.eval()
        self.model = model.to(self.device)
        limit = spec.max_length or int(getattr(self.tokenizer, "model_max_length", 0) or 0)
        if not 0 < limit <= 100_000:
            limit = FALLBACK_MAX_LENGTH
        self.max_length = limit
        self._version = spec.version or _model_fingerprint(self.source, model.config)
        logger.info(
            "reward model %s: %s on %s (max_length=%d, version=%s)",
            spec.name,
            self.source,
            self.device,
            self.max_length,
            self._version,
        )

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def version(self) -> str:
        return self._version

    @property
    def identity(self) -> str:
        return self.source

    async def score(
        self, prompts: Sequence[str], responses: Sequence[str], labels: Sequence[str]
    ) -> np.ndarray:
        if not (len(prompts) == len(labels) == len(responses)):
            raise ValueError("prompts, responses and labels must have the same length")
        texts = [prompt + response for prompt, response in zip(prompts, responses, strict=True)]
        if not texts:
            return np.zeros(0, dtype=np.float64)
        try:
            return await anyio.to_thread.run_sync(self.score_texts, texts)
        except RewardModelError:
            raise
        except Exception as exc:  # torch errors (OOM, bad input) must not become 500s
            logger.exception("reward model %s failed", self.name)
            raise RewardModelError(
                self.name,
                f"reward model {self.name!r} ({self.source}): {type(exc).__name__}: {exc}",
            ) from exc

    def score_texts(self, texts: Sequence[str]) -> np.ndarray:
        """First logit of every text, in batches of `batch_size` (blocking)."""
        torch = self._torch
        scores: list[np.ndarray] = []
        size = self.spec.batch_size
        with self._lock, torch.inference_mode():
            for start in range(0, len(texts), size):
                encoded = self.tokenizer(
                    list(texts[start : start + size]),
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                logits = self.model(**encoded).logits
                scores.append(logits[:, 0].float().cpu().numpy().astype(np.float64))
        result = np.concatenate(scores)
        if not np.isfinite(result).all():
            raise RewardModelError(
                self.name, f"reward model {self.name!r} ({self.source}): non-finite scores"
            )
        return result

    async def aclose(self) -> None:
        self.model = self.model.to("cpu")


def _model_fingerprint(source: str, config: Any) -> str:
    """A version when none is configured: the model config, plus the names, sizes and
    modification times of local weight files (a retrained model saved in place changes it)."""
    digest = hashlib.sha256(config.to_json_string(use_diff=False).encode("utf-8"))
    path = Path(source).expanduser()
    if path.is_dir():
        for entry in sorted(path.iterdir()):
            if entry.suffix in _WEIGHT_SUFFIXES and entry.is_file():
                stat = entry.stat()
                digest.update(f"{entry.name}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return "cfg-" + digest.hexdigest()[:16]


__all__ = ["HFRewardModel"]
