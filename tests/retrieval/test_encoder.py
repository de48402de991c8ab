"""Encoders: the hash encoder, alias resolution, mpnet assembly from split parts, and the
packaged MiniLM (offline, normalised, thread-safe)."""

from __future__ import annotations

import io
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.retrieval import encoder as encoder_module
from service.retrieval.encoder import (
    MINILM,
    MPNET,
    Encoder,
    EncoderLoadError,
    HashEncoder,
    assemble_mpnet,
    canonical_encoder_name,
    load_encoder,
)


def test_hash_encoder_is_deterministic_and_normalised() -> None:
    encoder = HashEncoder(64)
    texts = ["waterproof leather hiking boots", "", "Waterproof LEATHER hiking boots!"]
    vectors = encoder.encode(texts)
    assert vectors.shape == (3, 64) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors[[0, 2]], axis=1), 1.0, rtol=1e-5)
    assert not vectors[1].any()  # no tokens, zero vector
    np.testing.assert_array_equal(vectors[0], vectors[2])  # case and punctuation ignored
    np.testing.assert_array_equal(vectors, HashEncoder(64).encode(texts))
    assert encoder.encode([]).shape == (0, 64)


def test_hash_encoder_similarity_follows_word_overlap() -> None:
    vectors = HashEncoder(512).encode(
        ["leather hiking boots", "hiking boots leather brown", "espresso machine"]
    )
    assert vectors[0] @ vectors[1] > 0.6 > vectors[0] @ vectors[2]


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.text(max_size=40), min_size=1, max_size=5), st.integers(min_value=8, max_value=300)
)
def test_hash_encoder_norms_property(texts: list[str], dim: int) -> None:
    vectors = HashEncoder(dim).encode(texts)
    norms = np.linalg.norm(vectors, axis=1)
    assert vectors.shape == (len(texts), dim)
    assert np.all((np.abs(norms - 1.0) < 1e-4) | (norms == 0.0))


def test_aliases() -> None:
    assert canonical_encoder_name("minilm") == MINILM
    assert canonical_encoder_name("sentence-transformers/all-MiniLM-L6-v2") == MINILM
    assert canonical_encoder_name("mpnet") == MPNET
    assert canonical_encoder_name("hash") == "hash:256"
    assert canonical_encoder_name("hash:32") == "hash:32"
    assert canonical_encoder_name("/models/my-encoder") == "/models/my-encoder"
    hashed = load_encoder("hash:48")
    assert isinstance(hashed, HashEncoder) and hashed.dim == 48 and hashed.name == "hash:48"
    with pytest.raises(ValueError, match="dim must be >= 8"):
        HashEncoder(4)


def _fake_parts(tmp_path: Path) -> list[Path]:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr(f"{MPNET}/config.json", '{"model_type": "mpnet"}')
        bundle.writestr(f"{MPNET}/modules.json", "[]")
    data = buffer.getvalue()
    size = -(-len(data) // 5)
    parts = []
    for number in range(5):
        part = tmp_path / f"all-mpnet-base-v2.zip.00{number + 1}"
        part.write_bytes(data[number * size : (number + 1) * size])
        parts.append(part)
    return parts


def test_mpnet_is_assembled_once_atomically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parts = _fake_parts(tmp_path)
    monkeypatch.setattr(encoder_module, "mpnet_parts", lambda: parts)
    data_dir = tmp_path / "data"
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(assemble_mpnet(data_dir))) for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    target = data_dir / "models" / MPNET
    assert results == [target] * 3
    assert (target / "config.json").read_text() == '{"model_type": "mpnet"}'
    assert [p.name for p in (data_dir / "models").iterdir()] == [MPNET]  # temp dirs cleaned up
    parts[0].unlink()  # already assembled: parts are not read again
    assert assemble_mpnet(data_dir) == target


def test_mpnet_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(encoder_module, "mpnet_parts", list)
    with pytest.raises(EncoderLoadError, match="expected 5 installed part packages"):
        assemble_mpnet(tmp_path)
    garbage = [tmp_path / f"p{n}" for n in range(5)]
    for part in garbage:
        part.write_bytes(b"not a zip")
    monkeypatch.setattr(encoder_module, "mpnet_parts", lambda: garbage)
    with pytest.raises(EncoderLoadError, match="do not form a valid zip"):
        assemble_mpnet(tmp_path / "data")
    assert not (tmp_path / "data" / "models" / MPNET).exists()


def test_the_installed_mpnet_parts_are_found() -> None:
    parts = encoder_module.mpnet_parts()
    if not parts:
        pytest.skip("the all-mpnet-base-v2 part packages are not installed")
    assert [p.suffix for p in parts] == [".001", ".002", ".003", ".004", ".005"]


def test_unknown_model_fails_with_one_line(tmp_path: Path) -> None:
    with pytest.raises(EncoderLoadError) as info:
        load_encoder(str(tmp_path / "no-such-model"), device="cpu")
    assert "\n" not in str(info.value) and "no-such-model" in str(info.value)


def test_packaged_minilm_offline(minilm: Encoder) -> None:
    assert minilm.name == MINILM and minilm.dim == 384
    assert load_encoder("minilm", device="cpu") is minilm  # shared, not reloaded
    vectors = minilm.encode(["waterproof hiking boots", "espresso machine"])
    assert vectors.shape == (2, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-4)
    assert minilm.encode([]).shape == (0, 384)


def test_minilm_from_worker_threads(minilm: Encoder) -> None:
    texts = [
        f"{colour} running shoes size {size}"
        for colour in ("red", "blue", "black")
        for size in (7, 9)
    ]
    expected = minilm.encode(texts)
    outputs: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            outputs[worker] = minilm.encode(texts[worker:] + texts[:worker], batch_size=2)
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for worker, vectors in outputs.items():
        rolled = np.concatenate([expected[worker:], expected[:worker]])
        np.testing.assert_allclose(vectors, rolled, atol=1e-5)
