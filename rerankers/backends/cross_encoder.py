"""`cross-encoder`: pointwise rerankers that read ``query [SEP] document`` and output one logit
(or two class logits) per pair: ms-marco-MiniLM, bge-reranker-base / v2-m3, mxbai-rerank v1 and
any other Hugging Face sequence-classification model.

Fast on CPU by construction: every text is tokenized once; pairs are sorted by token length and
cut into batches by a token budget (padding only to the longest pair of each batch); results are
put back in input order. `rank_many` puts every query's pairs into the same batches. Three
runtimes share this pipeline: PyTorch (float32 / bfloat16 / float16), ONNX Runtime (fp32, dynamic
int8, or static int8 calibrated on the user's pairs) on an export made on first use and cached by
the weights' content hash, and OpenVINO on that same export (fp32, bf16, or NNCF static int8).
Architectures: BERT/MiniLM, RoBERTa/XLM-RoBERTa, DeBERTa-v2/v3, ModernBERT, ELECTRA (any
sequence-classification model transformers can load; the ONNX fusions cover the BERT family).

Scores: `score` is the model's logit (for a 2-label model, logit(relevant) - logit(not
relevant), the log-odds); `relevance` is sigmoid(logit) for 1-label models and
softmax(...)[label 1] for 2-label models, i.e. the same number either way.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from rankbridge.rerankers.core.base import QueryError, Reranker, Scores
from rankbridge.rerankers.core.calibration import minmax, sigmoid
from rankbridge.rerankers.core.config import RerankerConfig
from rankbridge.rerankers.core.errors import BackendError, ConfigError, require
from rankbridge.rerankers.runtime.long_documents import LongDocuments, PairTemplate, document_windows
from rankbridge.rerankers.core.paths import resolve_model
from rankbridge.rerankers.core.types import Candidate
from rankbridge.rerankers.runtime.batching import plan_batches, progress_bar
from rankbridge.rerankers.runtime.devices import Device, resolve_device, torch_dtype

logger = logging.getLogger(__name__)

class CrossEncoderConfig(RerankerConfig):
    """Configuration of the `cross-encoder` backend."""

    backend: Literal["cross-encoder"] = "cross-encoder"
    model: str = Field(
        description="Model reference: a local folder, a folder name under $RANKBRIDGE_MODEL_DIR, or a "
        "Hugging Face Hub id (loaded from the local HF cache; nothing is downloaded when offline)."
    )
    device: Device = Field(
        "auto",
        description="`auto` (cuda, then mps, then cpu), `cpu`, `cuda`, `cuda:<n>` or `mps`.",
    )
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto",
        description="Compute precision. torch: the weights' dtype (`auto`: float16 on CUDA, float32 elsewhere). "
        "openvino: `float32` or `bfloat16` (OpenVINO's inference precision hint; `auto` is float32). "
        "onnx computes in float32 (see `quantize`).",
    )
    max_tokens_per_batch: int = Field(
        8192,
        ge=16,
        description="Token budget of one batch: pairs sorted by length are added while "
        "pairs x longest pair stays within it. Ignored when `batch_size` is set.",
    )
    batch_size: int | None = Field(
        None, ge=1, description="A fixed number of pairs per batch instead of a token budget."
    )
    max_length: int | None = Field(
        None,
        ge=8,
        description="Longest pair in tokens (query + document + special tokens). Default: the "
        "tokenizer's model_max_length, capped by the model's position embeddings.",
    )
    activation: Literal["auto", "sigmoid", "softmax", "none"] = Field(
        "auto",
        description="How relevance is computed from the logits: `sigmoid` (1-label models), `softmax` "
        "(P(label 1) of a 2-label model), `none` (min-max of the raw scores over the candidate list: "
        "a ranking, not a probability). `auto` picks by the model's number of labels.",
    )
    runtime: Literal["torch", "onnx", "openvino"] = Field(
        "torch",
        description="`torch`, `onnx` (ONNX Runtime on an export made on first use and cached), or `openvino` "
        "(OpenVINO on that export, converted once; CPU only; needs the `openvino` extra).",
    )
    quantize: Literal["none", "int8", "int8-static"] = Field(
        "none",
        description="`int8`: dynamic int8 quantization of the ONNX export (runtime onnx). `int8-static`: static "
        "int8 with activation ranges calibrated once on the pairs in `calibration` (runtime onnx: QDQ with "
        "per-channel weights; runtime openvino: NNCF post-training quantization). Cached per calibration data.",
    )
    calibration: str | None = Field(
        None,
        description="Pairs that calibrate `quantize: int8-static`: a JSONL file (`{\"query\", \"document\"}` or "
        "`{\"query\", \"documents\": [...]}` per line) or a BEIR folder (queries beside their judged and seeded "
        "random corpus documents). Use data like what will be scored.",
    )
    calibration_pairs: int = Field(
        256, ge=1, description="At most this many pairs (in file order) calibrate `int8-static`."
    )
    long_documents: LongDocuments = Field(
        "truncate",
        description="Documents longer than fit beside the query: `truncate` keeps the beginning (the query "
        "is never cut); `max_chunk` scores overlapping windows that each fit beside the query and keeps the "
        "best window's score.",
    )
    chunk_overlap: int = Field(
        64, ge=0, description="Tokens shared by consecutive windows in `max_chunk` mode (at most half a window)."
    )
    num_threads: int | None = Field(
        None,
        ge=1,
        description="CPU threads for one forward pass (torch intra-op threads / ONNX Runtime intra-op "
        "threads). Default: the runtime's own choice (the number of physical cores).",
    )
    show_progress_bar: bool | None = Field(
        None, description="Show a tqdm bar over batches. Default: only for long runs (20+ batches) on a terminal."
    )

    @model_validator(mode="after")
    def _check_combinations(self) -> CrossEncoderConfig:
        if self.quantize == "int8" and self.runtime != "onnx":
            raise ValueError(f"quantize='int8' needs runtime 'onnx' (got runtime {self.runtime!r})")
        if self.quantize == "int8-static":
            if self.runtime not in ("onnx", "openvino"):
                raise ValueError(f"quantize='int8-static' needs runtime 'onnx' or 'openvino' (got {self.runtime!r})")
            if not self.calibration:
                raise ValueError(
                    "quantize='int8-static' needs field 'calibration': a JSONL file of (query, document) pairs "
                    "or a BEIR folder like the data to be scored"
                )
        elif self.calibration:
            raise ValueError("field 'calibration' is only read by quantize 'int8-static'")
        if self.runtime == "onnx" and self.dtype not in ("auto", "float32"):
            raise ValueError(f"runtime 'onnx' computes in float32; dtype {self.dtype!r} is for runtime 'torch' or 'openvino'")
        if self.runtime == "openvino" and self.dtype not in ("auto", "float32", "bfloat16"):
            raise ValueError(f"runtime 'openvino' computes in float32 or bfloat16, not dtype {self.dtype!r}")
        return self


@dataclass
class _Pair:
    ids: list[int]
    types: list[int]
    # the (query, candidate) documents this exact window belongs to: equal pairs are scored once,
    # so equal inputs get equal scores whatever batch (and padding) they would have landed in
    owners: list[int]


class CrossEncoderReranker(Reranker):
    """Rerank with a Hugging Face cross-encoder (sequence classification), on torch or ONNX Runtime.

    Example:
        >>> from rankbridge.rerankers import load_reranker
        >>> reranker = load_reranker({"backend": "cross-encoder", "model": "minilm-l6-ce-weak"})
        >>> results = reranker.rank(
        ...     "what is the capital of france",
        ...     ["Bananas are yellow fruit.", "Paris is the capital and largest city of France."],
        ... )
        >>> results.ids
        [1, 0]
        >>> results[0].relevance > 0.5 > results[1].relevance
        True
    """

    name = "cross-encoder"
    config_class = CrossEncoderConfig

    def __init__(self, config: CrossEncoderConfig | dict[str, Any] | None = None, **kwargs: Any):
        super().__init__(config, **kwargs)
        cfg: CrossEncoderConfig = self.config  # type: ignore[assignment]
        self.model_path = resolve_model(cfg.model)
        self.tokenizer = _load_tokenizer(self.model_path, cfg.model)
        model_config = _load_model_config(self.model_path, cfg.model)
        self.num_labels = int(getattr(model_config, "num_labels", 1))
        self.activation = _resolve_activation(cfg.activation, self.num_labels, cfg.model)
        self.max_length = _resolve_max_length(cfg.max_length, self.tokenizer, model_config)
        self.template = PairTemplate.from_tokenizer(self.tokenizer)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        if cfg.runtime == "openvino":
            self.device = _openvino_device(cfg.device)
        else:
            self.device = resolve_device(cfg.device, extra="cross-encoder", runtime=cfg.runtime)
        calibration = self._calibration_batches() if cfg.quantize == "int8-static" else None
        if cfg.runtime == "onnx":
            self._forward, accepted = _onnx_runner(self.model_path, cfg, self.device, calibration)
        elif cfg.runtime == "openvino":
            self._forward, accepted = _openvino_runner(self.model_path, cfg, calibration)
        else:
            self._forward, accepted = _torch_runner(self.model_path, cfg, self.device)
        self._use_token_types = "token_type_ids" in accepted

    def _calibration_batches(self) -> list[dict[str, np.ndarray]]:
        """The `calibration` pairs laid out exactly as scoring lays them out (same template,
        truncation and token-budget batches), with every input the graph may take; the
        quantizer keeps the ones its graph has."""
        from rankbridge.rerankers.runtime.calibration_data import read_calibration_pairs

        cfg: CrossEncoderConfig = self.config  # type: ignore[assignment]
        pairs = read_calibration_pairs(cfg.calibration, max_pairs=cfg.calibration_pairs)  # type: ignore[arg-type]
        laid_out, _ = self._build_pairs([q for q, _ in pairs], [[Candidate(text=d)] for _, d in pairs])
        lengths = np.fromiter((len(p.ids) for p in laid_out), dtype=np.int64, count=len(laid_out))
        batches = plan_batches(lengths, None if cfg.batch_size else cfg.max_tokens_per_batch, cfg.batch_size)
        self._use_token_types = True
        return [self._pad([laid_out[i] for i in idx], int(lengths[idx[0]])) for idx in batches]

    def model_fingerprint(self) -> str:
        """Content hash of the model folder (computed once), so the score cache never serves the
        scores of other weights; `scores_are_pointwise` unless relevance is min-max over the list."""
        if "_fingerprint" not in self.__dict__:
            from rankbridge.rerankers.core.cache import path_fingerprint

            self._fingerprint = path_fingerprint(self.model_path)
        return self._fingerprint

    def scores_are_pointwise(self) -> bool:
        return self.activation != "none"

    # ------------------------------------------------------------------ scoring

    def _score_batch(self, queries: list[str], candidate_lists: list[list[Candidate]]) -> list[Scores]:
        pairs, counts = self._build_pairs(queries, candidate_lists)
        window_scores = self._run(pairs)
        num_docs = sum(len(c) for c in candidate_lists)
        pooled = np.full(num_docs, -np.inf)
        owners = np.fromiter((o for p in pairs for o in p.owners), dtype=np.int64)
        repeats = np.fromiter((len(p.owners) for p in pairs), dtype=np.int64, count=len(pairs))
        with np.errstate(invalid="ignore"):  # NaN logits (damaged weights) are reported by the base class
            np.maximum.at(pooled, owners, np.repeat(window_scores, repeats))
        if counts["truncated"] or counts["chunked"]:
            logger.info(
                "cross-encoder: %d of %d documents longer than fit beside the query (max_length %d): "
                "%d truncated, %d split into %d windows",
                counts["truncated"] + counts["chunked"], num_docs, self.max_length,
                counts["truncated"], counts["chunked"], counts["windows"],
            )
        out, start = [], 0
        for cands in candidate_lists:
            raw = pooled[start : start + len(cands)]
            start += len(cands)
            out.append(Scores(scores=raw, relevance=self._relevance(raw)))
        return out

    def _relevance(self, raw: np.ndarray) -> np.ndarray:
        if self.activation == "none":
            return minmax(raw)
        # For a 2-label model raw is the log-odds l1 - l0, so sigmoid(raw) == softmax(l)[1].
        return sigmoid(raw)

    def _build_pairs(
        self, queries: list[str], candidate_lists: list[list[Candidate]]
    ) -> tuple[list[_Pair], dict[str, int]]:
        """Tokenize each distinct text once and lay out every distinct (query, window) pair."""
        cfg: CrossEncoderConfig = self.config  # type: ignore[assignment]
        texts = list(dict.fromkeys([*queries, *(c.text or "" for cands in candidate_lists for c in cands)]))
        # verbose=False: documents longer than max_length are expected here; windows are cut below.
        encoded = self.tokenizer(texts, add_special_tokens=False, return_attention_mask=False, verbose=False)["input_ids"]
        ids_of = dict(zip(texts, encoded))
        pairs: list[_Pair] = []
        pair_of: dict[tuple[tuple[int, ...], tuple[int, ...]], _Pair] = {}
        counts = {"truncated": 0, "chunked": 0, "windows": 0}
        owner = 0
        for query, cands in zip(queries, candidate_lists):
            q_ids = ids_of[query]
            try:
                room = self.template.document_room(len(q_ids), self.max_length)
            except ValueError as exc:  # the query alone fills the window: the caller's to fix
                raise QueryError(str(exc)) from None
            for cand in cands:
                d_ids = ids_of[cand.text or ""]
                windows = document_windows(d_ids, room, cfg.long_documents, cfg.chunk_overlap)
                if len(d_ids) > room:
                    counts["chunked" if len(windows) > 1 else "truncated"] += 1
                    counts["windows"] += len(windows) if len(windows) > 1 else 0
                for window in windows:
                    ids, types = self.template.build(q_ids, window)
                    key = (tuple(ids), tuple(types))
                    pair = pair_of.get(key)
                    if pair is None:
                        pair = pair_of[key] = _Pair(ids, types, [])
                        pairs.append(pair)
                    pair.owners.append(owner)
                owner += 1
        return pairs, counts

    def _run(self, pairs: list[_Pair]) -> np.ndarray:
        """Score pairs in length-sorted, token-budgeted batches; return scores in pair order."""
        lengths = np.fromiter((len(p.ids) for p in pairs), dtype=np.int64, count=len(pairs))
        cfg = self.config
        batches = plan_batches(lengths, None if cfg.batch_size else cfg.max_tokens_per_batch, cfg.batch_size)
        scores = np.empty(len(pairs), dtype=np.float64)
        show = self.config.show_progress_bar
        progress = progress_bar(len(batches), show, "cross-encoder batches")
        for idx in batches:
            feeds = self._pad([pairs[i] for i in idx], int(lengths[idx[0]]))
            logits = np.asarray(self._forward(feeds), dtype=np.float64)
            scores[idx] = self._raw_from_logits(logits)
            progress.update(1)
        progress.close()
        return scores

    def _pad(self, batch: list[_Pair], width: int) -> dict[str, np.ndarray]:
        n = len(batch)
        input_ids = np.full((n, width), self.pad_id, dtype=np.int64)
        mask = np.zeros((n, width), dtype=np.int64)
        types = np.zeros((n, width), dtype=np.int64) if self._use_token_types else None
        for row, pair in enumerate(batch):
            k = len(pair.ids)
            input_ids[row, :k] = pair.ids
            mask[row, :k] = 1
            if types is not None:
                types[row, :k] = pair.types
        feeds = {"input_ids": input_ids, "attention_mask": mask}
        if types is not None:
            feeds["token_type_ids"] = types
        return feeds

    def _raw_from_logits(self, logits: np.ndarray) -> np.ndarray:
        if logits.ndim == 1:
            return logits
        if logits.shape[1] == 1:
            return logits[:, 0]
        return logits[:, 1] - logits[:, 0]

    def close(self) -> None:
        self._forward = _closed


# ---------------------------------------------------------------------- batching


def _closed(feeds: dict[str, np.ndarray]) -> np.ndarray:
    raise BackendError("this cross-encoder was closed; create a new one")


# ---------------------------------------------------------------------- loading


def _not_found(reference: str) -> ConfigError:
    model_dir = os.environ.get("RANKBRIDGE_MODEL_DIR")
    where = f"$RANKBRIDGE_MODEL_DIR ({model_dir})" if model_dir else "$RANKBRIDGE_MODEL_DIR (unset)"
    return ConfigError(
        f"model '{reference}' not found: it is not a local folder, not under {where}, and not in the "
        "local Hugging Face cache (nothing is downloaded while HF_HUB_OFFLINE=1)"
    )


def _load_tokenizer(path: str, reference: str):
    transformers = require("transformers", extra="cross-encoder")
    local = Path(path).exists()
    if local and not Path(path).is_dir():
        raise ConfigError(f"model '{reference}' resolves to {path}, which is a file; give the model's folder")
    try:
        return transformers.AutoTokenizer.from_pretrained(path)
    except OSError as exc:
        if not local:
            raise _not_found(reference) from None
        raise ConfigError(f"model folder {path} has no usable tokenizer: {exc}") from None
    except Exception as exc:
        raise BackendError(f"could not load the tokenizer of {path}: {type(exc).__name__}: {exc}") from exc


def _load_model_config(path: str, reference: str):
    transformers = require("transformers", extra="cross-encoder")
    try:
        return transformers.AutoConfig.from_pretrained(path)
    except OSError:
        if not Path(path).exists():
            raise _not_found(reference) from None
        raise ConfigError(f"model folder {path} has no readable config.json") from None
    except ValueError as exc:
        raise ConfigError(f"model folder {path}: unreadable config.json: {exc}") from None


def _resolve_activation(activation: str, num_labels: int, reference: str) -> str:
    if num_labels not in (1, 2):
        raise ConfigError(
            f"model '{reference}' has {num_labels} output labels; the cross-encoder backend takes 1 (a relevance "
            "logit) or 2 (label 1 = relevant)"
        )
    if activation == "auto":
        return "sigmoid" if num_labels == 1 else "softmax"
    if activation == "softmax" and num_labels != 2:
        raise ConfigError(f"activation 'softmax' needs a 2-label model; '{reference}' has 1 label (use sigmoid)")
    return activation


def _resolve_max_length(requested: int | None, tokenizer: Any, model_config: Any) -> int:
    positions = getattr(model_config, "max_position_embeddings", None)
    if positions and getattr(model_config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
        positions -= 2  # these models offset position ids by padding_idx + 1
    if requested is not None:
        if positions and requested > positions:
            raise ConfigError(f"field 'max_length' is {requested}, but the model has only {positions} positions")
        return requested
    tok_max = getattr(tokenizer, "model_max_length", None)
    limits = [x for x in (positions, tok_max) if x and x < 1_000_000]  # HF uses ~1e30 for "unset"
    return int(min(limits)) if limits else 512


def _torch_runner(path: str, cfg: CrossEncoderConfig, device: str) -> tuple[Callable, set[str]]:
    torch = require("torch", extra="cross-encoder")
    transformers = require("transformers", extra="cross-encoder")
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    dtype = torch_dtype(cfg.dtype, device, extra="cross-encoder", gpu_default="float16")
    try:
        model = transformers.AutoModelForSequenceClassification.from_pretrained(path, dtype=dtype)
    except ImportError:
        raise
    except OSError as exc:
        raise BackendError(f"could not load the weights of {path}: {_short(exc)}") from None
    except Exception as exc:  # safetensors/torch raise many kinds for damaged files
        raise BackendError(
            f"could not load the weights of {path} (damaged file?): {type(exc).__name__}: {_short(exc)}"
        ) from None
    model = model.to(device).eval()
    import inspect

    accepted = set(inspect.signature(model.forward).parameters)

    def forward(feeds: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            inputs = {k: torch.from_numpy(v).to(device) for k, v in feeds.items()}
            return model(**inputs).logits.float().cpu().numpy()

    forward.model = model  # type: ignore[attr-defined]
    return forward, accepted


def _openvino_device(device: str) -> str:
    if device not in ("auto", "cpu"):
        raise ConfigError(f"runtime 'openvino' runs on cpu here, not device {device!r} (use runtime torch or onnx)")
    return "cpu"


def _openvino_runner(
    path: str, cfg: CrossEncoderConfig, calibration: list[dict[str, np.ndarray]] | None
) -> tuple[Callable, set[str]]:
    require("openvino", extra="openvino")
    from rankbridge.rerankers.runtime.openvino import compile_openvino, openvino_ir

    if not Path(path).is_dir():
        raise ConfigError(
            f"runtime 'openvino' exports from a local model folder; '{cfg.model}' resolved to '{path}', which is not one"
        )
    quantize = "int8-static" if cfg.quantize == "int8-static" else "none"
    try:
        xml = openvino_ir(path, quantize=quantize, calibration=calibration)
    except (BackendError, ConfigError, ImportError):
        raise
    except Exception as exc:
        raise BackendError(f"could not convert {path} for OpenVINO: {type(exc).__name__}: {_short(exc)}") from None
    precision = "bf16" if cfg.dtype == "bfloat16" else "f32"
    forward = compile_openvino(xml, precision=precision, num_threads=cfg.num_threads)
    forward.model_file = xml  # type: ignore[attr-defined]
    return forward, set(forward.input_names)  # type: ignore[attr-defined]


def _onnx_runner(
    path: str, cfg: CrossEncoderConfig, device: str, calibration: list[dict[str, np.ndarray]] | None = None
) -> tuple[Callable, set[str]]:
    ort = require("onnxruntime", extra="onnx")
    from rankbridge.rerankers.runtime.onnx import export_onnx

    if not Path(path).is_dir():
        raise ConfigError(
            f"runtime 'onnx' exports from a local model folder; '{cfg.model}' resolved to '{path}', which is not one"
        )
    try:
        onnx_path = export_onnx(path, quantize=cfg.quantize, calibration=calibration)
    except (BackendError, ConfigError, ImportError):
        raise
    except Exception as exc:  # anything else the export meets in a damaged folder
        raise BackendError(f"could not export {path} to ONNX: {type(exc).__name__}: {_short(exc)}") from None
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if cfg.num_threads:
        options.intra_op_num_threads = cfg.num_threads
    options.inter_op_num_threads = 1
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ConfigError(f"device '{device}' was asked for, but onnxruntime has no CUDAExecutionProvider")
        _, _, index = device.partition(":")
        providers: list[Any] = [("CUDAExecutionProvider", {"device_id": int(index or 0)}), "CPUExecutionProvider"]
    elif device == "cpu":
        providers = ["CPUExecutionProvider"]
    else:
        raise ConfigError(f"runtime 'onnx' runs on cpu or cuda, not '{device}'")
    try:
        session = ort.InferenceSession(str(onnx_path), sess_options=options, providers=providers)
    except Exception as exc:
        raise BackendError(f"ONNX Runtime could not load {onnx_path}: {type(exc).__name__}: {_short(exc)}") from None
    accepted = {i.name for i in session.get_inputs()}

    def forward(feeds: dict[str, np.ndarray]) -> np.ndarray:
        return session.run(["logits"], {k: v for k, v in feeds.items() if k in accepted})[0]

    forward.session = session  # type: ignore[attr-defined]
    forward.onnx_path = onnx_path  # type: ignore[attr-defined]
    forward.model_file = onnx_path  # type: ignore[attr-defined]
    return forward, accepted


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


__all__ = ["CrossEncoderConfig", "CrossEncoderReranker"]
