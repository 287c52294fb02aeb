"""`voyage`: Voyage AI rerankers (rerank-2.5, rerank-2.5-lite, rerank-2, rerank-2-lite).

Scores: `score` and `relevance` are both Voyage's `relevance_score` (in [0, 1]). An
`instruction` is put in front of the query text (rerank-2.5 follows instructions given so).
Lists are split at 1,000 documents and at Voyage's 600K-token total (query tokens x documents +
document tokens, counted high without Voyage's tokenizer). Usage: `total_tokens`, `requests`.
The api key defaults to `$VOYAGE_API_KEY`.

Example:
    >>> from rankbridge.rerankers import load_reranker
    >>> load_reranker("voyage:rerank-2.5", api_key="...").config.base_url
    'https://api.voyageai.com/v1'
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from rankbridge.rerankers.backends._remote import RemoteRerankConfig, RemoteReranker
from rankbridge.rerankers.backends._remote import base_url_field, max_documents_field, model_field
from rankbridge.rerankers.runtime.rerank_http import DIALECTS


class VoyageConfig(RemoteRerankConfig):
    """Configuration of the `voyage` backend."""

    backend: Literal["voyage"] = "voyage"
    model: str = model_field("Voyage", "`rerank-2.5`, `rerank-2.5-lite`, `rerank-2`, `rerank-2-lite`.")
    base_url: str = base_url_field(DIALECTS["voyage"].default_base_url)
    max_documents_per_request: int = max_documents_field(
        1000, " Voyage takes at most 1,000; requests are also kept under its 600K-token total."
    )
    truncate: bool = Field(
        True,
        description="Voyage's `truncation`: cut a query + document pair past the model's context instead of "
        "answering 400.",
    )

    api_key_env: ClassVar[tuple[str, ...]] = ("VOYAGE_API_KEY",)
    request_options: ClassVar[tuple[str, ...]] = ("truncate",)


class VoyageReranker(RemoteReranker):
    """Voyage rerank over HTTP; `relevance` is Voyage's `relevance_score`."""

    name = "voyage"
    config_class = VoyageConfig


__all__ = ["VoyageConfig", "VoyageReranker"]
