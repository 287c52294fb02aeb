"""`vllm-rerank`: a vLLM server's rerank route (`vllm serve <cross-encoder>`), e.g.
`python -m vllm.entrypoints.openai.api_server --model BAAI/bge-reranker-v2-m3`.

Scores: `score` and `relevance` are both vLLM's `relevance_score`: for a 1-label
sequence-classification cross-encoder, the sigmoid of its logit, i.e. the same relevance as the
in-process `cross-encoder` backend on the same weights. Pairs past the model's context are
truncated by the request (`truncate_prompt_tokens: -1`) unless `truncate` is false.
`max_tokens_per_doc` and `instruction` go in vLLM's fields of those names. Page candidates go as
`{"content": [{"type": "image_url", "image_url": {"url": <data URL or http(s) URL>}}]}` for
multimodal rerankers. Usage: `prompt_tokens`, `total_tokens`, `requests`.

Example:
    >>> from rankbridge.rerankers import load_reranker
    >>> reranker = load_reranker({"backend": "vllm-rerank", "model": "minilm", "base_url": "http://127.0.0.1:8000"})
    >>> reranker.client.url
    'http://127.0.0.1:8000/v1/rerank'
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from rankbridge.rerankers.backends._remote import RemoteRerankConfig, RemoteReranker
from rankbridge.rerankers.backends._remote import base_url_field, image_reference, max_documents_field
from rankbridge.rerankers.core.types import Candidate


class VLLMRerankConfig(RemoteRerankConfig):
    """Configuration of the `vllm-rerank` backend."""

    backend: Literal["vllm-rerank"] = "vllm-rerank"
    model: str | None = Field(
        None, description="The served model name (`--served-model-name`); None: the server's only model."
    )
    base_url: str = base_url_field(None, "http://127.0.0.1:8000")
    max_documents_per_request: int = max_documents_field(1000, " vLLM documents no cap; it batches pairs itself.")
    truncate: bool = Field(
        True,
        description="Send `truncate_prompt_tokens: -1`: a pair past the model's context is cut to it instead of "
        "answering 400.",
    )

    request_options: ClassVar[tuple[str, ...]] = ("truncate",)


class VLLMRerankReranker(RemoteReranker):
    """vLLM's rerank route over HTTP; `relevance` is vLLM's `relevance_score` (sigmoid of the logit)."""

    name = "vllm-rerank"
    config_class = VLLMRerankConfig
    accepts_images = True

    def encode_image(self, index: int, candidate: Candidate) -> Any:
        url = image_reference(index, candidate, data_url=True)
        return {"content": [{"type": "image_url", "image_url": {"url": url}}]}


__all__ = ["VLLMRerankConfig", "VLLMRerankReranker"]
