"""`infinity`: an infinity-emb server running a reranker
(`infinity_emb v2 --model-id BAAI/bge-reranker-base`).

Scores: `score` and `relevance` are both Infinity's `relevance_score` (the sigmoid of the
model's logit). Usage: `prompt_tokens`, `total_tokens` (Infinity counts characters by default),
`requests`.

Example:
    >>> from rankbridge.rerankers import load_reranker
    >>> load_reranker({"backend": "infinity", "base_url": "http://127.0.0.1:7997"}).client.url
    'http://127.0.0.1:7997/rerank'
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from rankbridge.rerankers.backends._remote import RemoteRerankConfig, RemoteReranker
from rankbridge.rerankers.backends._remote import base_url_field, max_documents_field


class InfinityConfig(RemoteRerankConfig):
    """Configuration of the `infinity` backend."""

    backend: Literal["infinity"] = "infinity"
    model: str | None = Field(None, description="The model id the server runs (`--model-id`); None: its only model.")
    base_url: str = base_url_field(None, "http://127.0.0.1:7997")
    max_documents_per_request: int = max_documents_field(1000, " Infinity documents no cap; it batches itself.")


class InfinityReranker(RemoteReranker):
    """An Infinity reranking server over HTTP; `relevance` is Infinity's `relevance_score`."""

    name = "infinity"
    config_class = InfinityConfig


__all__ = ["InfinityConfig", "InfinityReranker"]
