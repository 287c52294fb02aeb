"""`jina`: Jina AI rerankers (jina-reranker-v2-base-multilingual, jina-reranker-m0, ...).

Scores: `score` and `relevance` are both Jina's `relevance_score` (in [0, 1]). Page candidates
(`Candidate.image`) go as `{"image": <base64 PNG, or the http(s) URL given>}`, which
jina-reranker-m0 reads; a candidate with an image is sent as its image. Usage: `total_tokens`,
`requests`. The api key defaults to `$JINA_API_KEY`.

Example:
    >>> from rankbridge.rerankers import load_reranker
    >>> load_reranker("jina:jina-reranker-m0", api_key="...").accepts_images
    True
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from rankbridge.rerankers.backends._remote import RemoteRerankConfig, RemoteReranker
from rankbridge.rerankers.backends._remote import base_url_field, image_reference, model_field
from rankbridge.rerankers.core.types import Candidate
from rankbridge.rerankers.runtime.rerank_http import DIALECTS


class JinaConfig(RemoteRerankConfig):
    """Configuration of the `jina` backend."""

    backend: Literal["jina"] = "jina"
    model: str = model_field("Jina", "`jina-reranker-v2-base-multilingual`, `jina-reranker-m0` (text and page images), ...")
    base_url: str = base_url_field(DIALECTS["jina"].default_base_url)

    api_key_env: ClassVar[tuple[str, ...]] = ("JINA_API_KEY",)


class JinaReranker(RemoteReranker):
    """Jina rerank over HTTP (text, and page images for jina-reranker-m0); `relevance` is Jina's
    `relevance_score`."""

    name = "jina"
    config_class = JinaConfig
    accepts_images = True

    def encode_image(self, index: int, candidate: Candidate) -> Any:
        return {"image": image_reference(index, candidate, data_url=False)}


__all__ = ["JinaConfig", "JinaReranker"]
