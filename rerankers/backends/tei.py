"""`tei`: a Hugging Face text-embeddings-inference server running a reranker
(`text-embeddings-router --model-id BAAI/bge-reranker-base`).

Scores: by default `score` and `relevance` are both TEI's `score`, the sigmoid of the model's
logit (TEI's `raw_scores: false`); with `raw_scores: true`, `score` is the logit and `relevance`
its sigmoid. Lists are split at 32 texts (TEI's default `--max-client-batch-size`; raise
`max_documents_per_request` if the server was started with more). Usage: `compute_tokens` (TEI's
`x-compute-tokens` header), `requests`.

Example:
    >>> from rankbridge.rerankers import load_reranker
    >>> load_reranker({"backend": "tei", "base_url": "http://127.0.0.1:8080"}).config.max_documents_per_request
    32
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from rankbridge.rerankers.backends._remote import RemoteRerankConfig, RemoteReranker
from rankbridge.rerankers.backends._remote import base_url_field, max_documents_field


class TEIConfig(RemoteRerankConfig):
    """Configuration of the `tei` backend."""

    backend: Literal["tei"] = "tei"
    model: str | None = Field(
        None,
        description="A name for the model the server runs (TEI serves one model and takes no model field; "
        "not sent, but part of the score cache's key).",
    )
    base_url: str = base_url_field(None, "http://127.0.0.1:8080")
    max_documents_per_request: int = max_documents_field(
        32, " TEI answers 422 above its `--max-client-batch-size` (32 by default)."
    )
    raw_scores: bool = Field(
        False, description="Ask TEI for logits: `score` is the logit and `relevance` its sigmoid (same relevance)."
    )
    truncate: bool = Field(
        True, description="TEI's `truncate`: cut pairs past the model's length instead of answering 413."
    )

    request_options: ClassVar[tuple[str, ...]] = ("raw_scores", "truncate")


class TEIReranker(RemoteReranker):
    """A TEI reranking server over HTTP; `relevance` is TEI's sigmoid score."""

    name = "tei"
    config_class = TEIConfig


__all__ = ["TEIConfig", "TEIReranker"]
