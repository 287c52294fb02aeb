"""`cohere`: Cohere Rerank (rerank-v3.5, rerank-english-v3.0, rerank-multilingual-v3.0,
rerank-v4.0) over its HTTP API, or any Cohere-compatible server (`rankbridge serve`).

Scores: `score` and `relevance` are both Cohere's `relevance_score`, a probability in [0, 1].
Usage: `search_units` (and `input_tokens` / `output_tokens` where Cohere bills them), plus
`requests`. The api key defaults to `$COHERE_API_KEY`, then `$CO_API_KEY`.

Example:
    >>> from rankbridge.rerankers import load_reranker
    >>> reranker = load_reranker("cohere:rerank-v3.5", api_key="...")
    >>> reranker.config.base_url, reranker.config.max_documents_per_request
    ('https://api.cohere.com', 1000)
    >>> reranker.rank("capital of france", ["Paris is the capital.", "Bananas."]).ids  # doctest: +SKIP
    [0, 1]
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator

from rankbridge.rerankers.backends._remote import RemoteRerankConfig, RemoteReranker
from rankbridge.rerankers.backends._remote import base_url_field, max_documents_field, model_field
from rankbridge.rerankers.runtime.rerank_http import DIALECTS, Dialect


class CohereConfig(RemoteRerankConfig):
    """Configuration of the `cohere` backend."""

    backend: Literal["cohere"] = "cohere"
    model: str = model_field("Cohere", "`rerank-v3.5`, `rerank-english-v3.0`, `rerank-multilingual-v3.0`, `rerank-v4.0-pro`, ...")
    base_url: str = base_url_field(DIALECTS["cohere"].default_base_url)
    max_documents_per_request: int = max_documents_field(1000, " Cohere takes at most 10,000 and recommends 1,000.")
    api_version: Literal["v2", "v1"] = Field(
        "v2", description="`v2` (`POST /v2/rerank`) or the legacy `v1` (`POST /v1/rerank`, no `max_tokens_per_doc`)."
    )

    api_key_env: ClassVar[tuple[str, ...]] = ("COHERE_API_KEY", "CO_API_KEY")

    @field_validator("api_version")
    @classmethod
    def _v1_has_no_truncation(cls, value: str, info: ValidationInfo) -> str:
        if value == "v1" and info.data.get("max_tokens_per_doc") is not None:
            raise ValueError("Cohere's v1 rerank API has no max_tokens_per_doc; use api_version v2 or leave it unset")
        return value

    def request_dialect(self) -> Dialect:
        return DIALECTS["cohere-v1" if self.api_version == "v1" else "cohere"]


class CohereReranker(RemoteReranker):
    """Cohere Rerank over HTTP; `relevance` is Cohere's `relevance_score` (a probability)."""

    name = "cohere"
    config_class = CohereConfig


__all__ = ["CohereConfig", "CohereReranker"]
