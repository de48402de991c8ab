"""Export a sentence-transformers model to ONNX (backends ``onnx`` and ``onnx-int8``), prove
the export agrees with PyTorch, and publish it atomically. Needs torch, sentence-transformers,
onnx and onnxruntime (build time only: the slim image runs exports without torch).

The graph is the model's transformer plus its pooling and normalisation, so one onnxruntime
call gives the sentence embedding. Exporter: torch.onnx's TorchScript exporter with eager
attention (its graph is the one onnxruntime's BERT optimizer recognises and fuses), falling
back to the dynamo exporter where that one is unavailable. ``onnx-int8`` then fuses the graph
with onnxruntime's transformer optimizer and quantises the weights dynamically to int8, per
output channel (per-tensor scales cost MiniLM ~0.05 of cosine on short queries; per-channel
scales keep it near 0.99).

Correctness is checked, not assumed: every export encodes a fixed probe set with PyTorch and
with onnxruntime and records the cosines in its metadata; an fp32 export whose worst cosine is
below FP32_MIN_COSINE, or an int8 export below INT8_MIN_COSINE, is refused.

One module past the usual size: export, quantisation, the agreement check and atomic
publication are one build step, and its command line is the build images' entry point.

    python -m service.retrieval.onnx_export --encoder all-MiniLM-L6-v2 --backend onnx-int8 --out DIR
    python -m service.retrieval.onnx_export --backend onnx-int8 --into DIR   # DIR/<model>-<backend>
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
import time
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from service.errors import ResourceError
from service.retrieval.backends import ONNX, ONNX_BACKENDS, ONNX_INT8
from service.retrieval.encoder import EncoderLoadError, resolve_encoder
from service.retrieval.onnx_encoder import (
    EXPORT_FORMAT,
    META_FILE,
    MODEL_FILE,
    TOKENIZER_FILE,
    OnnxEncoder,
    OnnxExportInfo,
    artifact_checksum,
    export_slug,
    find_onnx_export,
)

logger = logging.getLogger(__name__)

OPSET = 17
OUTPUT = "sentence_embedding"
FP32_MIN_COSINE = 0.9999
INT8_MIN_COSINE = 0.90
INT8_QUANTIZATION = "dynamic-int8-per-channel"
PROBE_TEXTS = (
    "cardigan",
    "cotton cardigan sweater for women",
    "something cozy for cold evenings, cardigan, for my wife and ideally cotton",
    "waterproof leather hiking boots",
    "please something nice i think thanks",
    "black wool coat, warm, for men, for a gift",
    "Noise-cancelling wireless headphones with long battery life!",
    "espresso",
    "a",
    "",
    "ergonomic mesh office chair with lumbar support and adjustable armrests, grey",
    "Stainless steel insulated water bottle - keeps drinks cold for 24 hours.",
    "running shoes size 42 for trails, lightweight, grippy soles, blue or green",
    "Kinder-Regenjacke, wasserdicht",
    "絵文字 🎁 gift idea",
    # Longer than the models' 256-token window: truncation must match sentence-transformers.
    " ".join(["a soft warm blanket for the sofa with fringes and a cotton cover"] * 40),
)


class EncoderExportError(ResourceError, RuntimeError):
    """An export cannot be made or does not agree with PyTorch (one-line message)."""


def _versions() -> dict[str, str]:
    versions: dict[str, str] = {}
    for package in (
        "torch",
        "transformers",
        "sentence-transformers",
        "onnx",
        "onnxruntime",
        "onnxscript",
    ):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _pooling_mode(model: Any) -> tuple[str, bool]:
    """(pooling mode, normalised) of a sentence-transformers model: Transformer -> Pooling
    (-> Normalize) is the only layout exported."""
    modules = list(model)
    kinds = [type(m).__name__ for m in modules]
    if not kinds or kinds[0] != "Transformer" or len(kinds) < 2 or kinds[1] != "Pooling":
        raise EncoderExportError(
            f"only Transformer -> Pooling (-> Normalize) models can be exported, not {' -> '.join(kinds)}"
        )
    extra = kinds[2:]
    if extra not in ([], ["Normalize"]):
        raise EncoderExportError(f"modules after pooling cannot be exported: {', '.join(extra)}")
    pooling = modules[1]
    config = pooling.get_config_dict() if hasattr(pooling, "get_config_dict") else {}
    mode = config.get("pooling_mode")
    if mode is None:  # sentence-transformers < 5 spells the mode as flags
        flags = {
            "mean": getattr(pooling, "pooling_mode_mean_tokens", False),
            "cls": getattr(pooling, "pooling_mode_cls_token", False),
            "max": getattr(pooling, "pooling_mode_max_tokens", False),
        }
        chosen = [name for name, on in flags.items() if on]
        mode = chosen[0] if len(chosen) == 1 else "+".join(chosen) or "none"
    if mode not in ("mean", "cls", "max"):
        raise EncoderExportError(f"pooling mode {mode!r} cannot be exported (mean, cls, max can)")
    return str(mode), extra == ["Normalize"]


def _wrapper(transformer: Any, pooling: str, inputs: list[str]) -> Any:
    import torch

    class SentenceEmbedding(torch.nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, *tensors: Any) -> Any:
            features = dict(zip(inputs, tensors, strict=True))
            hidden = self.transformer(**features).last_hidden_state
            mask = features["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            if pooling == "cls":
                pooled = hidden[:, 0]
            elif pooling == "max":
                pooled = (hidden + (mask - 1.0) * 1e9).max(dim=1).values
            else:
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            # Normalised whether or not the model has a Normalize module: every ospo encoder
            # returns unit vectors (inner product = cosine).
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    return SentenceEmbedding().eval()


def _torch_export(module: Any, sample: tuple[Any, ...], inputs: list[str], path: Path) -> str:
    import torch

    axes = {name: {0: "batch", 1: "sequence"} for name in inputs}
    try:
        torch.onnx.export(
            module,
            sample,
            str(path),
            input_names=inputs,
            output_names=[OUTPUT],
            dynamic_axes={**axes, OUTPUT: {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
        return "torch.onnx.export (torchscript)"
    except (TypeError, RuntimeError, ValueError) as exc:
        logger.warning("TorchScript exporter failed (%s); trying the dynamo exporter", exc)
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    torch.onnx.export(
        module,
        sample,
        str(path),
        input_names=inputs,
        output_names=[OUTPUT],
        dynamic_shapes={name: {0: batch, 1: sequence} for name in inputs},
        opset_version=max(OPSET, 18),
        dynamo=True,
        external_data=False,
    )
    return "torch.onnx.export (dynamo)"


def _quantize(source: Path, target: Path, work: Path) -> list[str]:
    """Fuse (best effort) and quantise `source` into `target`; returns the steps taken."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    steps: list[str] = []
    fused = work / "fused.onnx"
    try:
        from onnxruntime.transformers.optimizer import optimize_model

        optimized = optimize_model(str(source), model_type="bert", num_heads=0, hidden_size=0)
        optimized.save_model_to_file(str(fused))
        stats = {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}
        steps.append("onnxruntime.transformers.optimizer bert " + json.dumps(stats, sort_keys=True))
        source = fused
    except Exception as exc:  # the fusions are an optimisation; the plain graph is correct
        logger.warning("onnxruntime transformer optimizer failed (%s); quantising unfused", exc)
    quantize_dynamic(
        str(source),
        str(target),
        weight_type=QuantType.QInt8,
        per_channel=True,
        extra_options={"DefaultTensorType": 1},  # FLOAT, for outputs of fused contrib ops
    )
    steps.append("onnxruntime.quantization.quantize_dynamic QInt8 per_channel")
    return steps


def export_onnx(
    name_or_path: str,
    backend: str,
    out_dir: Path | str,
    data_dir: Path | None = None,
    overwrite: bool = False,
) -> OnnxExportInfo:
    """Export, verify and publish `name_or_path` for `backend` at out_dir (built in a
    temporary sibling and renamed into place; an export already there is kept unless
    `overwrite`)."""
    with warnings.catch_warnings():
        # The TorchScript exporter is chosen on purpose (module docstring); its deprecation
        # notice, tracer warnings and the quantiser's notes are not the caller's to act on,
        # and where warnings are errors they would abort a correct export.
        warnings.simplefilter("ignore")
        return _export_onnx(name_or_path, backend, out_dir, data_dir, overwrite)


def _export_onnx(
    name_or_path: str,
    backend: str,
    out_dir: Path | str,
    data_dir: Path | None,
    overwrite: bool,
) -> OnnxExportInfo:
    if backend not in ONNX_BACKENDS:
        raise EncoderExportError(f"backend {backend!r} is not one of {', '.join(ONNX_BACKENDS)}")
    out = Path(out_dir)
    if (out / META_FILE).is_file() and not overwrite:
        return OnnxExportInfo.read(out)
    try:
        import torch
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise EncoderExportError(
            f"exporting {name_or_path!r} to ONNX needs torch and sentence-transformers ({exc}); "
            "install them or provide a prebuilt export (OSPO_ONNX_EXPORTS)"
        ) from None
    name, location = resolve_encoder(name_or_path, data_dir)
    started = time.perf_counter()
    try:
        model = SentenceTransformer(location, device="cpu")
    except Exception as exc:  # many loader error types; surface one line
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EncoderLoadError(f"encoder {name_or_path!r} cannot be loaded: {reason}") from None
    model.eval()
    pooling, normalize = _pooling_mode(model)
    first = model[0]
    transformer = first.auto_model
    # Eager attention: its graph is what onnxruntime's optimizer fuses; SDPA exports as a
    # pattern it does not recognise. Numerically the two agree (checked below).
    if hasattr(transformer, "set_attn_implementation"):
        transformer.set_attn_implementation("eager")
    else:
        transformer.config._attn_implementation = "eager"
    tokenizer = model.tokenizer
    inputs = [
        name_
        for name_ in ("input_ids", "attention_mask", "token_type_ids")
        if name_ in tokenizer.model_input_names or name_ == "attention_mask"
    ]
    max_seq_length = int(model.max_seq_length)
    do_lower_case = bool(getattr(first, "do_lower_case", False))
    sample = tokenizer(["a short text", "a somewhat longer text for the export"], padding=True)
    sample_tensors = tuple(torch.tensor(sample[name_], dtype=torch.long) for name_ in inputs)
    wrapper = _wrapper(transformer, pooling, inputs)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        work = tmp / "work"
        work.mkdir()
        fp32 = work / "fp32.onnx"
        with torch.no_grad():
            exporter = _torch_export(wrapper, sample_tensors, inputs, fp32)
        steps = [exporter]
        if backend == ONNX_INT8:
            steps += _quantize(fp32, tmp / MODEL_FILE, work)
            quantization = INT8_QUANTIZATION
        else:
            fp32.rename(tmp / MODEL_FILE)
            quantization = "none"
        tokenizer.backend_tokenizer.save(str(tmp / TOKENIZER_FILE))
        shutil.rmtree(work)
        dimension = getattr(model, "get_embedding_dimension", None) or (
            model.get_sentence_embedding_dimension
        )
        dim = int(dimension())
        provisional = OnnxExportInfo(
            model=name,
            backend=backend,
            quantization=quantization,
            dim=dim,
            max_seq_length=max_seq_length,
            pooling=pooling,
            normalize=normalize,
            do_lower_case=do_lower_case,
            inputs=inputs,
            output=OUTPUT,
            checksum="",
        )
        checksum = artifact_checksum(tmp, provisional.functional())
        _write_info(tmp, provisional, checksum, {}, {})
        agreement = _agreement(model, OnnxEncoder.load(tmp, verify=False))
        floor = INT8_MIN_COSINE if backend == ONNX_INT8 else FP32_MIN_COSINE
        if agreement["min_cosine"] < floor:
            raise EncoderExportError(
                f"the {backend} export of {name} disagrees with PyTorch: worst probe cosine "
                f"{agreement['min_cosine']:.6f} < {floor}"
            )
        exporter_info = {"steps": steps, "opset": OPSET, "versions": _versions()}
        info = _write_info(tmp, provisional, checksum, exporter_info, agreement)
        # mkdtemp makes 0700 directories; an export built as root in an image build must stay
        # readable by the unprivileged user the service runs as.
        tmp.chmod(0o755)
        try:
            tmp.rename(out)
        except OSError:
            if not (out / META_FILE).is_file():
                raise
            if overwrite:
                shutil.rmtree(out)
                tmp.rename(out)
            else:
                logger.info("export %s appeared meanwhile; keeping it", out)
                return OnnxExportInfo.read(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info(
        "exported %s for %s to %s in %.1f s (worst probe cosine %.6f)",
        name,
        backend,
        out,
        time.perf_counter() - started,
        agreement["min_cosine"],
    )
    return info


def _write_info(
    directory: Path,
    provisional: OnnxExportInfo,
    checksum: str,
    exporter: dict[str, Any],
    agreement: dict[str, Any],
) -> OnnxExportInfo:
    info = OnnxExportInfo(
        **{**provisional.functional(), "inputs": list(provisional.inputs)},
        checksum=checksum,
        exporter=exporter,
        agreement=agreement,
        format=EXPORT_FORMAT,
    )
    (directory / META_FILE).write_text(
        json.dumps(info.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    return info


def _agreement(model: Any, encoder: OnnxEncoder) -> dict[str, Any]:
    texts = list(PROBE_TEXTS)
    reference = np.asarray(
        model.encode(
            texts,
            batch_size=8,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        ),
        dtype=np.float32,
    )
    exported = encoder.encode(texts)
    cosines = np.sum(reference * exported, axis=1)
    return {
        "probe_texts": len(texts),
        "min_cosine": round(float(cosines.min()), 7),
        "mean_cosine": round(float(cosines.mean()), 7),
    }


def ensure_onnx_export(name_or_path: str, backend: str, data_dir: Path) -> Path:
    """An export of the encoder for `backend`: a prebuilt one on the search path, else one
    made now under <data_dir>/models/onnx (once; concurrent starts share it)."""
    found = find_onnx_export(name_or_path, backend, data_dir)
    if found is not None:
        return found
    target = Path(data_dir) / "models" / "onnx" / export_slug(name_or_path, backend)
    export_onnx(name_or_path, backend, target, data_dir=data_dir)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Export a sentence-transformers model for the onnx / onnx-int8 backends."
    )
    parser.add_argument("--encoder", default="all-MiniLM-L6-v2", help="model name, alias or path")
    parser.add_argument("--backend", choices=ONNX_BACKENDS, default=ONNX)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", type=Path, help="export directory to create")
    where.add_argument(
        "--into",
        type=Path,
        help="a search-path directory (OSPO_ONNX_EXPORTS): the export goes into DIR/<model>-<backend>",
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="OSPO_DATA_DIR (for mpnet)")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        out = args.out or args.into / export_slug(args.encoder, args.backend)
        info = export_onnx(
            args.encoder, args.backend, out, data_dir=args.data_dir, overwrite=args.overwrite
        )
    except (EncoderExportError, EncoderLoadError) as exc:
        logger.error("%s", exc)
        return 1
    summary = {
        "model": info.model,
        "backend": info.backend,
        "checksum": info.checksum,
        "agreement": info.agreement,
    }
    print(json.dumps(summary))  # noqa: T201 - the command's output
    return 0


__all__ = [
    "FP32_MIN_COSINE",
    "INT8_MIN_COSINE",
    "PROBE_TEXTS",
    "EncoderExportError",
    "ensure_onnx_export",
    "export_onnx",
    "main",
]


if __name__ == "__main__":
    raise SystemExit(main())
