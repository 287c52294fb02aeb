"""Export a local sequence-classification model to ONNX once, optionally int8-quantized, and cache it.

The cache folder is `cache_dir("onnx", "<model folder name>-<content hash>")`, so changed weights
never reuse a stale export and a second load of the same weights skips the export entirely.
Nothing is downloaded: the export reads the local weights with transformers.

Files in the cache folder:

- `model.onnx`: the fp32 graph as torch exports it (dynamic batch and sequence axes);
- `model-opt.onnx`: the same graph after ONNX Runtime's transformer fusions (attention,
  GELU, layer norm), when the architecture is one the fusion tool knows (BERT family);
- `model-int8.onnx`: dynamic int8 quantization (int8 weights, activations quantized per call)
  of the fused graph; the feed-forward output projections stay float32.

Example:
    >>> from rankbridge.rerankers.runtime.onnx import export_onnx
    >>> path = export_onnx("/path/to/minilm-l6-ce-weak", quantize="int8")  # doctest: +SKIP
    >>> path.name  # doctest: +SKIP
    'model-int8.onnx'
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Literal

from rankbridge.rerankers.core.errors import BackendError, require
from rankbridge.rerankers.core.paths import cache_dir, content_hash

logger = logging.getLogger(__name__)

Quantize = Literal["none", "int8"]
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
_OPSET = 17
# Model types onnxruntime.transformers.optimizer can fuse (its model_type argument).
_FUSABLE = {"bert": "bert", "distilbert": "bert", "roberta": "bert", "xlm-roberta": "bert", "electra": "bert"}


def onnx_cache_folder(model_path: str | os.PathLike) -> Path:
    """The cache folder of one model's ONNX files, keyed by the model's content hash."""
    path = Path(model_path)
    return cache_dir("onnx", f"{path.name}-{content_hash(path)}")


def export_onnx(model_path: str | os.PathLike, quantize: Quantize = "none", optimize: bool = True) -> Path:
    """Return the ONNX file for a local model folder, exporting (and quantizing) it on first use.

    Args:
        model_path: a local folder holding a Hugging Face sequence-classification model.
        quantize: `none` (fp32) or `int8` (dynamic quantization of the weights).
        optimize: apply ONNX Runtime's transformer fusions where the architecture allows.

    Raises:
        BackendError: the export or the quantization failed (the message says which step).
    """
    folder = onnx_cache_folder(model_path)
    plain = folder / "model.onnx"
    if not plain.is_file():
        _atomic(plain, lambda tmp: _export(Path(model_path), tmp))
    graph = plain
    if optimize:
        fused = folder / "model-opt.onnx"
        if not fused.is_file() and not (folder / "model-opt.unsupported").is_file():
            model_config = _model_config(Path(model_path))
            model_type = model_config.get("model_type")
            if model_type in _FUSABLE:
                _atomic(fused, lambda tmp: _fuse(plain, tmp, _FUSABLE[model_type], model_config))
            else:
                (folder / "model-opt.unsupported").write_text(f"no fusions for model_type {model_type!r}\n")
        if fused.is_file():
            graph = fused
    if quantize == "none":
        return graph
    quantized = folder / ("model-int8.onnx" if graph is not plain else "model-plain-int8.onnx")
    if not quantized.is_file():
        _atomic(quantized, lambda tmp: _quantize(graph, tmp))
    return quantized


def _atomic(target: Path, write) -> None:
    """Write `target` through a temporary file in the same folder, then rename: a crash never
    leaves a truncated file that a later load would trust."""
    handle, tmp_name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=".onnx", dir=target.parent)
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.replace(tmp, target)
        os.chmod(target, 0o644)
    finally:
        tmp.unlink(missing_ok=True)


def _model_config(model_path: Path) -> dict:
    import json

    try:
        return json.loads((model_path / "config.json").read_text())
    except (OSError, ValueError):
        return {}


def _export(model_path: Path, out: Path) -> None:
    torch = require("torch", extra="onnx")
    transformers = require("transformers", extra="onnx")
    require("onnx", extra="onnx")
    logger.info("exporting %s to ONNX (once; cached in %s)", model_path, out.parent)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        str(model_path), dtype=torch.float32, attn_implementation="eager"
    ).eval()
    accepted = _forward_inputs(model)
    names = [n for n in INPUT_NAMES if n in accepted]
    dummy = {n: torch.ones(2, 16, dtype=torch.long) for n in names}
    if "token_type_ids" in dummy:
        dummy["token_type_ids"] = torch.zeros(2, 16, dtype=torch.long)
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes["logits"] = {0: "batch"}
    try:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")
            # The TorchScript exporter: 6x faster than dynamo here and its graph is the one
            # onnxruntime's BERT fusions recognize. dynamo=True is the fallback when it is gone.
            try:
                torch.onnx.export(
                    model, (), str(out), kwargs=dummy, input_names=names, output_names=["logits"],
                    dynamic_axes=axes, opset_version=_OPSET, dynamo=False,
                )
            except (TypeError, RuntimeError, NotImplementedError) as exc:
                logger.info("TorchScript ONNX export unavailable (%s); using the dynamo exporter", exc)
                batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence", max=4096)
                torch.onnx.export(
                    model, (), str(out), kwargs=dummy, input_names=names, output_names=["logits"],
                    dynamic_shapes={n: {0: batch, 1: seq} for n in names}, dynamo=True, external_data=False,
                )
    except Exception as exc:
        raise BackendError(f"ONNX export of {model_path} failed: {type(exc).__name__}: {exc}") from exc


def _forward_inputs(model) -> set[str]:
    import inspect

    return set(inspect.signature(model.forward).parameters)


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


def _quantize(source: Path, out: Path) -> None:
    """Dynamic int8: weights quantized once (uint8, per output channel), activations per call.
    The feed-forward output projections stay float32 (see `_KEEP_FLOAT`); measured on SciFact
    BM25 top-100 with MiniLM-L6, that lifts Kendall tau against fp32 from 0.89 to 0.93."""
    onnx = require("onnx", extra="onnx")
    require("onnxruntime", extra="onnx")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logger.info("quantizing %s to int8 (once)", source)
    graph = onnx.load(str(source), load_external_data=False)
    keep_float = [node.name for node in graph.graph.node if _KEEP_FLOAT.search(node.name or "")]
    try:
        quantize_dynamic(
            str(source),
            str(out),
            # uint8 weights: x86 without VNNI computes u8 x s8 with a saturating instruction.
            weight_type=QuantType.QUInt8,
            per_channel=True,
            nodes_to_exclude=keep_float,
            # Fused nodes (com.microsoft domain) defeat ONNX shape inference; their outputs are float.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    except Exception as exc:
        raise BackendError(f"int8 quantization of {source} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        # quantize_dynamic leaves shape-inference scratch files beside the output.
        for leftover in out.parent.glob(f"{out.stem}*-inferred.onnx"):
            leftover.unlink(missing_ok=True)


def clear_onnx_cache(model_path: str | os.PathLike) -> None:
    """Delete one model's cached ONNX files (the next load exports again)."""
    shutil.rmtree(onnx_cache_folder(model_path), ignore_errors=True)
