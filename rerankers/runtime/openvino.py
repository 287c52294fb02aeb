"""OpenVINO runtime for encoder models: the cached ONNX export (`runtime/onnx.py`) read by OpenVINO,
converted once to OpenVINO IR, optionally int8-quantized with NNCF, and compiled for the CPU in
float32 or bfloat16.

Files, beside the ONNX files in the model's cache folder (keyed by the weights' content hash):

- `openvino/model.xml` + `.bin`: the plain ONNX graph converted to OpenVINO IR (float32 weights);
- `openvino/model-int8-static-<key>.xml` + `.bin`: NNCF post-training quantization of that IR
  (transformer preset: int8 weights and activations on the matrix multiplies, with SmoothQuant;
  softmax, layer norms, GELU and the feed-forward output projections stay float), the activation ranges calibrated on the batches a
  user gave; `<key>` hashes those batches and the settings.

Precision is chosen when the model is compiled, not baked into a file: `f32`, or `bf16`
(OpenVINO's `INFERENCE_PRECISION_HINT`; on CPUs with AVX512-BF16 or AMX its matrix multiplies and
fused attention run in bfloat16, elsewhere OpenVINO falls back to float32 and says so in the log).
Note that OpenVINO's own default on such CPUs is bf16; here the caller always says which.

Example:
    >>> from rankbridge.rerankers.runtime.openvino import openvino_ir, compile_openvino
    >>> xml = openvino_ir("/path/to/minilm-l6-ce-weak")  # doctest: +SKIP
    >>> forward = compile_openvino(xml, precision="bf16")  # doctest: +SKIP
    >>> forward({"input_ids": ids, "attention_mask": mask, "token_type_ids": types})  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rankbridge.rerankers.core.errors import BackendError, ConfigError, require
from rankbridge.rerankers.runtime.onnx import Feeds, Head, calibration_key, export_onnx, onnx_cache_folder

logger = logging.getLogger(__name__)

EXTRA = "openvino"
Precision = Literal["f32", "bf16"]
OpenVinoQuantize = Literal["none", "int8-static"]
_INT8_SETTINGS = "nncf:transformer:mixed:smoothquant-default:ffn-out-float:v2"
# Feed-forward output projections (BERT family / DeBERTa `.../layer.N/output/dense`, ModernBERT
# `.../layers.N/mlp/Wo`): their GELU inputs have the widest range; kept float, as in the ONNX
# int8 paths (MiniLM-L6 on SciFact: Kendall tau against fp32 0.949 -> 0.963).
_KEEP_FLOAT = [r".*/layer\.\d+/output/dense/MatMul.*", r".*/layers\.\d+/mlp/Wo/MatMul.*"]


def openvino_ir(
    model_path: str | os.PathLike,
    quantize: OpenVinoQuantize = "none",
    *,
    head: Head = "sequence-classification",
    calibration: Sequence[Feeds] | None = None,
) -> Path:
    """Return the OpenVINO IR (`.xml`) of a local model folder, converting (and quantizing) on first use.

    Args:
        model_path: a local Hugging Face model folder (exported to ONNX first, once).
        quantize: `none`, or `int8-static` (NNCF post-training quantization calibrated on `calibration`).
        head: the ONNX export's head (see `runtime.onnx.export_onnx`).
        calibration: for `int8-static`, the batches (feed dicts) whose activation ranges set the scales.

    Raises:
        MissingDependencyError: `openvino` (or, for int8, `nncf`) is not installed; names the extra.
        ConfigError: `int8-static` without calibration batches.
        BackendError: conversion or quantization failed.
    """
    ov = require("openvino", extra=EXTRA)
    if quantize == "int8-static":
        require("nncf", extra=EXTRA)
        if not calibration:
            raise ConfigError("quantize 'int8-static' needs calibration batches (field 'calibration')")
    folder = onnx_cache_folder(model_path, head) / "openvino"
    folder.mkdir(exist_ok=True)
    plain = folder / "model.xml"
    if not plain.is_file():
        onnx_file = export_onnx(model_path, quantize="none", optimize=False, head=head)
        logger.info("converting %s to OpenVINO IR (once; cached in %s)", onnx_file, folder)
        try:
            converted = ov.convert_model(str(onnx_file))
        except Exception as exc:
            raise BackendError(f"OpenVINO could not read {onnx_file}: {type(exc).__name__}: {_short(exc)}") from None
        _save_atomic(ov, converted, plain)
    if quantize == "none":
        return plain
    key = calibration_key(calibration or [], extra=f"{head}:{_INT8_SETTINGS}")
    quantized = folder / f"model-int8-static-{key}.xml"
    if not quantized.is_file():
        _save_atomic(ov, _quantize_int8(ov, plain, calibration or [], head), quantized)
    return quantized


def _quantize_int8(ov: Any, plain: Path, batches: Sequence[Feeds], head: Head = "sequence-classification") -> Any:
    nncf = require("nncf", extra=EXTRA)
    logger.info("calibrating and quantizing %s to int8 with NNCF on %d batches (once)", plain, len(batches))
    model = ov.Core().read_model(str(plain))
    names = {port.get_any_name() for port in model.inputs}
    dataset = nncf.Dataset([{k: np.asarray(v, dtype=np.int64) for k, v in b.items() if k in names} for b in batches])
    try:
        return nncf.quantize(
            model,
            dataset,
            model_type=nncf.ModelType.TRANSFORMER,
            preset=nncf.QuantizationPreset.MIXED,
            subset_size=len(batches),
            ignored_scope=nncf.IgnoredScope(patterns=_KEEP_FLOAT if head == "sequence-classification" else [], validate=False),
        )
    except Exception as exc:
        raise BackendError(f"NNCF int8 quantization of {plain} failed: {type(exc).__name__}: {_short(exc)}") from None


def _save_atomic(ov: Any, model: Any, target: Path) -> None:
    """Save an IR pair (.xml + .bin) through a temporary folder, .bin first: a reader trusts
    the .xml, which only appears once its weights are complete."""
    scratch = Path(tempfile.mkdtemp(prefix=".ir-", dir=target.parent))
    try:
        ov.save_model(model, str(scratch / "model.xml"), compress_to_fp16=False)
        os.replace(scratch / "model.bin", target.with_suffix(".bin"))
        os.replace(scratch / "model.xml", target)
    except OSError as exc:
        raise BackendError(f"could not write the OpenVINO IR {target}: {exc}") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def compile_openvino(
    xml: str | os.PathLike,
    precision: Precision = "f32",
    num_threads: int | None = None,
    device: str = "CPU",
    output: str = "logits",
) -> Callable[[Feeds], np.ndarray]:
    """Compile an IR for one device and return `forward(feeds) -> output array`.

    Latency hint (one stream using every core: batches arrive one after another); `num_threads`
    caps the inference threads. The returned function carries `.compiled` and `.xml`.
    """
    ov = require("openvino", extra=EXTRA)
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": precision}
    if num_threads:
        config["INFERENCE_NUM_THREADS"] = int(num_threads)
    core = ov.Core()
    try:
        compiled = core.compile_model(str(xml), device, config)
    except Exception as exc:
        raise BackendError(f"OpenVINO could not compile {xml} for {device}: {type(exc).__name__}: {_short(exc)}") from None
    actual = compiled.get_property("INFERENCE_PRECISION_HINT")
    if precision == "bf16" and actual != ov.Type.bf16:
        logger.warning("this CPU has no bfloat16 support OpenVINO can use; computing in %s", actual)
    names = {port.get_any_name() for port in compiled.inputs}
    result_port = compiled.output(output) if output in {n for p in compiled.outputs for n in p.get_names()} else compiled.output(0)
    local = threading.local()  # an infer request is not thread-safe: one per calling thread

    def forward(feeds: Feeds) -> np.ndarray:
        request = getattr(local, "request", None)
        if request is None:
            request = local.request = compiled.create_infer_request()
        outputs = request.infer({k: v for k, v in feeds.items() if k in names}, share_inputs=True)
        return np.array(outputs[result_port], copy=True)

    forward.compiled = compiled  # type: ignore[attr-defined]
    forward.xml = Path(xml)  # type: ignore[attr-defined]
    forward.input_names = names  # type: ignore[attr-defined]
    return forward


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


__all__ = ["compile_openvino", "openvino_ir"]
