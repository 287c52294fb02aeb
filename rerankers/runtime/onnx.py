"""The one ONNX exporter and quantizer: a local encoder model (a cross-encoder's sequence
classification head, or a bi-encoder with mean pooling) exported once, optionally int8-quantized,
and cached. The cross-encoder backend, the OpenVINO runtime and the dense first-stage embedder
all read their graphs from here.

The cache folder is `cache_dir("onnx", "<model folder name>-<content hash>[-<head>]")`, so changed
weights never reuse a stale export and a second load of the same weights skips the export
entirely. Nothing is downloaded: the export reads the local weights with transformers.

Files in the cache folder:

- `model.onnx`: the fp32 graph as torch exports it (dynamic batch and sequence axes);
- `model-opt.onnx`: the same graph after ONNX Runtime's transformer fusions (attention,
  GELU, layer norm), when the architecture is one the fusion tool knows (BERT, RoBERTa,
  XLM-RoBERTa, ELECTRA, DistilBERT); other architectures (DeBERTa-v2/v3, ModernBERT) keep the
  plain graph, which ONNX Runtime still optimizes generically when a session loads it (logged
  once per process and architecture; `model-opt.unsupported` records the decision);
- `model-int8.onnx`: dynamic int8 quantization (int8 weights, activations quantized per call)
  of the fused graph; for the classification head the feed-forward output projections stay float32;
- `model-int8-static-<key>.onnx`: static int8 in QDQ form (int8 per-channel weights, uint8
  activations whose ranges were calibrated once on the pairs a user gave; `<key>` hashes those
  calibration inputs and the settings, so other calibration data gives another file).

Example:
    >>> from rankbridge.rerankers.runtime.onnx import export_onnx
    >>> path = export_onnx("/path/to/minilm-l6-ce-weak", quantize="int8")  # doctest: +SKIP
    >>> path.name  # doctest: +SKIP
    'model-int8.onnx'
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from rankbridge.rerankers.core.errors import BackendError, ConfigError, require
from rankbridge.rerankers.core.paths import atomic_file, cache_dir, content_hash

logger = logging.getLogger(__name__)

Quantize = Literal["none", "int8", "int8-static"]
Head = Literal["sequence-classification", "mean-pooling"]
Feeds = dict[str, "np.ndarray"]
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
_OPSET = 17
# Model types onnxruntime.transformers.optimizer can fuse (its model_type argument).
_FUSABLE = {
    "bert": "bert", "distilbert": "bert", "roberta": "bert", "xlm-roberta": "bert", "camembert": "bert",
    "electra": "bert",
}
_OUTPUT = {"sequence-classification": "logits", "mean-pooling": "sentence_embedding"}
_fallback_logged: set[str] = set()


def onnx_cache_folder(
    model_path: str | os.PathLike, head: Head = "sequence-classification", name: str | None = None
) -> Path:
    """The cache folder of one model's ONNX files, keyed by the model's content hash (and the head:
    a classification graph and a mean-pooled embedding graph of the same folder differ)."""
    path = Path(model_path)
    suffix = "" if head == "sequence-classification" else f"-{head}"
    return cache_dir("onnx", f"{name or path.name}-{content_hash(path)}{suffix}")


def export_onnx(
    model_path: str | os.PathLike,
    quantize: Quantize = "none",
    optimize: bool = True,
    *,
    head: Head = "sequence-classification",
    name: str | None = None,
    calibration: Sequence[Feeds] | None = None,
) -> Path:
    """Return the ONNX file for a local model folder, exporting (and quantizing) it on first use.

    Args:
        model_path: a local folder holding a Hugging Face encoder (a sequence-classification model
            for `head="sequence-classification"`, any encoder for `head="mean-pooling"`).
        quantize: `none` (fp32), `int8` (dynamic: int8 weights, activations quantized per call) or
            `int8-static` (QDQ: int8 per-channel weights, activation ranges calibrated on
            `calibration`).
        optimize: apply ONNX Runtime's transformer fusions where the architecture allows.
        head: what the graph outputs: `logits`, or a unit-length mean-pooled `sentence_embedding`.
        name: the cache folder's readable name (default: the model folder's name).
        calibration: for `int8-static`, the batches (feed dicts of int64 arrays named like the
            graph's inputs) whose activation ranges set the quantization scales.

    Raises:
        ConfigError: `int8-static` without calibration batches.
        BackendError: the export or the quantization failed (the message says which step).
    """
    folder = onnx_cache_folder(model_path, head, name)
    plain = folder / "model.onnx"
    if not plain.is_file():
        _atomic(plain, lambda tmp: _export(Path(model_path), tmp, head))
    if quantize == "int8-static":
        # Static QDQ quantization works on the plain graph: ONNX Runtime's calibration needs
        # standard operators, and the session folds each Q/DQ pair into integer kernels itself.
        if not calibration:
            raise ConfigError("quantize 'int8-static' needs calibration batches (field 'calibration')")
        key = calibration_key(calibration, extra=f"{head}:{_STATIC_SETTINGS}")
        static = folder / f"model-int8-static-{key}.onnx"
        if not static.is_file():
            _atomic(static, lambda tmp: _quantize_static(plain, tmp, calibration, head))
        return static
    graph = plain
    if optimize:
        fused = folder / "model-opt.onnx"
        marker = folder / "model-opt.unsupported"
        model_config = _model_config(Path(model_path))
        model_type = model_config.get("model_type")
        if not fused.is_file() and not marker.is_file():
            if model_type in _FUSABLE:
                _atomic(fused, lambda tmp: _fuse(plain, tmp, _FUSABLE[model_type], model_config))
            else:
                marker.write_text(f"no ONNX Runtime transformer fusions for model_type {model_type!r}\n")
        if fused.is_file():
            graph = fused
        elif model_type not in _fallback_logged:
            _fallback_logged.add(str(model_type))
            logger.info(
                "ONNX Runtime has no transformer fusions for model_type %r; using the plain export "
                "(ONNX Runtime still applies its generic graph optimizations when the session loads)",
                model_type,
            )
    if quantize == "none":
        return graph
    quantized = folder / ("model-int8.onnx" if graph is not plain else "model-plain-int8.onnx")
    if not quantized.is_file():
        _atomic(quantized, lambda tmp: _quantize(graph, tmp, head))
    return quantized


def calibration_key(batches: Sequence[Feeds], extra: str = "") -> str:
    """A short hash of calibration batches (their input names, shapes and values) and settings:
    the cache key of a statically quantized file, so other calibration data gives another file."""
    digest = hashlib.sha256(extra.encode())
    for feeds in batches:
        for input_name in sorted(feeds):
            array = np.ascontiguousarray(feeds[input_name], dtype=np.int64)
            digest.update(f"{input_name}{array.shape}".encode())
            digest.update(array.tobytes())
    return digest.hexdigest()[:12]


def _atomic(target: Path, write) -> None:
    """Write `target` through `paths.atomic_file`: a crash never leaves a truncated file that a
    later load would trust."""
    with atomic_file(target) as tmp:
        write(tmp)


def _model_config(model_path: Path) -> dict:
    import json

    try:
        return json.loads((model_path / "config.json").read_text())
    except (OSError, ValueError):
        return {}


def _export(model_path: Path, out: Path, head: Head = "sequence-classification") -> None:
    torch = require("torch", extra="onnx")
    transformers = require("transformers", extra="onnx")
    require("onnx", extra="onnx")
    logger.info("exporting %s to ONNX (once; cached in %s)", model_path, out.parent)
    # eager attention: the pattern ONNX Runtime's optimizer fuses into one Attention op
    auto = transformers.AutoModelForSequenceClassification if head == "sequence-classification" else transformers.AutoModel
    try:
        model = auto.from_pretrained(str(model_path), dtype=torch.float32, attn_implementation="eager").eval()
    except ImportError:
        raise
    except Exception as exc:  # safetensors/torch raise many kinds for damaged or unsafe (pickled) files
        detail = " ".join(str(exc).split())[:300]
        raise BackendError(
            f"could not load the weights of {model_path} for the ONNX export (damaged file?): "
            f"{type(exc).__name__}: {detail}"
        ) from None
    accepted = _forward_inputs(model)
    names = [n for n in INPUT_NAMES if n in accepted]
    if head == "mean-pooling":
        model = _MeanPooled.wrap(torch, model, names)
    output = _OUTPUT[head]
    dummy = {n: torch.ones(2, 16, dtype=torch.long) for n in names}
    if "token_type_ids" in dummy:
        dummy["token_type_ids"] = torch.zeros(2, 16, dtype=torch.long)
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes[output] = {0: "batch"}
    try:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")
            # The TorchScript exporter: 6x faster than dynamo here and its graph is the one
            # onnxruntime's BERT fusions recognize. dynamo=True is the fallback when it is gone.
            try:
                torch.onnx.export(
                    model, (), str(out), kwargs=dummy, input_names=names, output_names=[output],
                    dynamic_axes=axes, opset_version=_OPSET, dynamo=False,
                )
            except (TypeError, RuntimeError, NotImplementedError) as exc:
                logger.info("TorchScript ONNX export unavailable (%s); using the dynamo exporter", exc)
                batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence", max=4096)
                torch.onnx.export(
                    model, (), str(out), kwargs=dummy, input_names=names, output_names=[output],
                    dynamic_shapes={n: {0: batch, 1: seq} for n in names}, dynamo=True, external_data=False,
                )
    except Exception as exc:
        raise BackendError(f"ONNX export of {model_path} failed: {type(exc).__name__}: {exc}") from exc


def _forward_inputs(model) -> set[str]:
    import inspect

    return set(inspect.signature(model.forward).parameters)


class _MeanPooled:
    """A bi-encoder graph: the encoder's last hidden state, mean-pooled over the attention mask
    and L2-normalized (sentence-transformers' `Pooling(mean)` + `Normalize`), in one ONNX graph."""

    @staticmethod
    def wrap(torch, encoder, names: list[str]):
        class MeanPooled(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.encoder = encoder

            def forward(self, input_ids, attention_mask, token_type_ids=None):
                inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
                if token_type_ids is not None:
                    inputs["token_type_ids"] = token_type_ids
                hidden = self.encoder(**inputs).last_hidden_state
                weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
                return torch.nn.functional.normalize(pooled, dim=-1)

        return MeanPooled().eval()


def _fuse(source: Path, out: Path, model_type: str, model_config: dict) -> None:
    require("onnxruntime", extra="onnx")
    from onnxruntime.transformers import optimizer

    heads = int(model_config.get("num_attention_heads") or 0)  # 0: let the tool read them from the graph
    hidden = int(model_config.get("hidden_size") or 0)
    try:
        # opt_level=0: only the transformer fusions; ONNX Runtime applies its own graph
        # optimizations when the session loads, so nothing hardware-specific is baked into the file.
        fused = optimizer.optimize_model(
            str(source), model_type=model_type, num_heads=heads, hidden_size=hidden, opt_level=0
        )
        fused.save_model_to_file(str(out))
    except Exception as exc:
        raise BackendError(f"ONNX Runtime fusion of {source} failed: {type(exc).__name__}: {exc}") from exc


# Feed-forward output projections (BERT-family node names): their inputs, the GELU outputs, have
# the widest range in the network, and quantizing them per tensor costs the most ranking fidelity.
_KEEP_FLOAT = re.compile(r"/layer\.\d+/output/dense/MatMul$")


def _quantize(source: Path, out: Path, head: Head = "sequence-classification") -> None:
    """Dynamic int8: weights quantized once (per output channel), activations per call.

    Classification head: uint8 weights, the feed-forward output projections kept float32 (see
    `_KEEP_FLOAT`); measured on SciFact BM25 top-100 with MiniLM-L6, that lifts Kendall tau
    against fp32 from 0.89 to 0.93. Mean-pooling head (the dense first stage): int8 weights on
    every MatMul and fused Attention (cosine to fp32 ~0.99, per-tensor: ~0.93)."""
    onnx = require("onnx", extra="onnx")
    require("onnxruntime", extra="onnx")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logger.info("quantizing %s to int8 (once)", source)
    graph = onnx.load(str(source), load_external_data=False)
    if head == "sequence-classification":
        keep_float = [node.name for node in graph.graph.node if _KEEP_FLOAT.search(node.name or "")]
        # uint8 weights: x86 without VNNI computes u8 x s8 with a saturating instruction.
        options = {"weight_type": QuantType.QUInt8, "nodes_to_exclude": keep_float}
    else:
        options = {"weight_type": QuantType.QInt8, "op_types_to_quantize": ["MatMul", "Attention"]}
    try:
        quantize_dynamic(
            str(source),
            str(out),
            per_channel=True,
            **options,
            # Fused nodes (com.microsoft domain) defeat ONNX shape inference; their outputs are float.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    except Exception as exc:
        raise BackendError(f"int8 quantization of {source} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        # quantize_dynamic leaves shape-inference scratch files beside the output.
        for leftover in out.parent.glob(f"{out.stem}*-inferred.onnx"):
            leftover.unlink(missing_ok=True)


# Static int8 settings; part of the cache key of a statically quantized file.
_STATIC_METHOD = "minmax"
_STATIC_SETTINGS = f"qdq:w-int8-per-channel:a-uint8-{_STATIC_METHOD}:weight-matmuls:ffn-out-float:v1"
# Feed-forward output projections of the architectures this package tests (BERT family,
# DeBERTa: `.../layer.N/output/dense`; ModernBERT: `.../layers.N/mlp/Wo`).
_KEEP_FLOAT_STATIC = re.compile(r"(/layer\.\d+/output/dense/MatMul|/layers\.\d+/mlp/Wo/MatMul)$")


def _quantize_static(source: Path, out: Path, batches: Sequence[Feeds], head: Head) -> None:
    """Static int8 in QDQ form: int8 weights per output channel, uint8 activations with ranges
    (min-max) calibrated once on `batches`. Only the weight matrix multiplies are quantized (the
    attention products of two activations and the classifier stay float), and, as in the dynamic
    path, the feed-forward output projections, whose GELU inputs have the widest range, stay float."""
    onnx = require("onnx", extra="onnx")
    require("onnxruntime", extra="onnx")
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    logger.info("calibrating and quantizing %s to static int8 on %d batches (once)", source, len(batches))
    graph = onnx.load(str(source), load_external_data=False)
    weights = {init.name for init in graph.graph.initializer}
    for node in graph.graph.node:  # weights exported as Constant nodes count too
        if node.op_type == "Constant":
            weights.update(node.output)
    inputs = {i.name for i in graph.graph.input}
    targets = [
        node.name
        for node in graph.graph.node
        if node.op_type == "MatMul"
        and any(name in weights for name in node.input)
        and not (head == "sequence-classification" and _KEEP_FLOAT_STATIC.search(node.name or ""))
    ]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._batches = iter(batches)

        def get_next(self):
            feeds = next(self._batches, None)
            if feeds is None:
                return None
            return {k: np.asarray(v, dtype=np.int64) for k, v in feeds.items() if k in inputs}

    try:
        quantize_static(
            str(source),
            str(out),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_quantize=targets,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
            calibration_cache_path=None,
        )
    except Exception as exc:
        raise BackendError(f"static int8 quantization of {source} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        for leftover in out.parent.glob(f"{out.stem}*-inferred.onnx"):
            leftover.unlink(missing_ok=True)


def clear_onnx_cache(model_path: str | os.PathLike) -> None:
    """Delete one model's cached ONNX files (the next load exports again)."""
    shutil.rmtree(onnx_cache_folder(model_path), ignore_errors=True)
