"""LangChain document compressor: `RankbridgeCompressor`, any rankbridge backend as a reranking step.

Imports only from `langchain_core`. Install with ``pip install 'rankbridge[langchain]'``.
"""

from __future__ import annotations

import asyncio
import copy
import os
from collections.abc import Sequence
from typing import Any, Dict, List, Optional, Union

from rankbridge.rerankers.core.errors import require

require("langchain_core", extra="langchain", package="langchain-core")

from langchain_core.callbacks import Callbacks  # noqa: E402
from langchain_core.documents import BaseDocumentCompressor, Document  # noqa: E402
from pydantic import ConfigDict, Field, PrivateAttr  # noqa: E402

from rankbridge.rerankers.core.base import Reranker  # noqa: E402
from rankbridge.rerankers.core.types import Candidate, RankedResults  # noqa: E402

from rankbridge.integrations.adapters.candidates import PdfPageSource, image_from_metadata, make_candidate  # noqa: E402
from rankbridge.integrations.adapters.lazy_reranker import LazyReranker  # noqa: E402

RELEVANCE_SCORE_KEY = "relevance_score"
RETRIEVAL_SCORE_KEY = "retrieval_score"


class RankbridgeCompressor(BaseDocumentCompressor):
    """Rerank retrieved documents with any rankbridge backend; the backend is chosen by config.

    Returns copies of the documents (metadata deep-copied; `id` kept), best first, each with
    the backend's calibrated relevance in [0, 1] in ``metadata["relevance_score"]``. A
    first-stage score is kept: it stays under `first_stage_score_key`, and a
    ``relevance_score`` written by an earlier stage moves to ``metadata["retrieval_score"]``
    before it is replaced. Documents map back by position, so duplicates stay distinct.

    A document whose metadata names an image (``image``, ``image_base64``, ``image_path``,
    ``image_url``) or a PDF page (a ``.pdf`` ``source``/``file_path`` with ``page``, 0-based,
    or ``page_number``, 1-based) becomes a page candidate for page backends (`vlm-page`,
    `ocr-page`); its `page_content`, if any, is the text a text backend reads.

    Args:
        reranker: a `Reranker`, or any spec `load_reranker` accepts: a YAML/JSON config path,
            a dict, a shorthand such as ``"cross-encoder:minilm-l6-ce-weak"``, or None to read
            ``$RANKBRIDGE_RERANKER``. The spec is validated now; the model loads on first use.
        top_n: keep the best `top_n` documents; None keeps all.
        score_threshold: drop documents whose relevance is below this value in [0, 1].
        first_stage_score_key: the metadata key holding the retriever's score, passed to the
            backend as the first-stage score (used by `identity`, `on_error: fallback` and
            `fuse_first_stage`); None to ignore it.

    Example:
        >>> from langchain_core.documents import Document
        >>> compressor = RankbridgeCompressor(reranker="lexical", top_n=1)
        >>> docs = [Document("Bananas are yellow."), Document("Paris is the capital of France.")]
        >>> [d.page_content for d in compressor.compress_documents(docs, "capital of France")]
        ['Paris is the capital of France.']
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    reranker: Union[str, Dict[str, Any], None] = Field(
        default=None,
        description="The reranker spec as given (config path, dict or shorthand), or the config of "
        "the Reranker passed in; never the model.",
    )
    top_n: Optional[int] = Field(default=None, gt=0, description="Number of documents to return; None returns all.")
    score_threshold: Optional[float] = Field(
        default=None, ge=0.0, le=1.0, description="Drop documents whose calibrated relevance is below this."
    )
    first_stage_score_key: Optional[str] = Field(
        default="score", description="Metadata key of the first-stage score, if the retriever writes one."
    )

    _lazy: LazyReranker = PrivateAttr()

    def __init__(self, reranker: Reranker | str | Dict[str, Any] | os.PathLike | None = None, **kwargs: Any):
        lazy = LazyReranker(reranker)
        super().__init__(reranker=lazy.spec, **kwargs)
        self._lazy = lazy

    def get_reranker(self) -> Reranker:
        """The underlying `Reranker`, built now if it was not yet."""
        return self._lazy.get()

    def compress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Optional[Callbacks] = None,
    ) -> Sequence[Document]:
        """Rerank `documents` for `query`; returns new documents, best first."""
        if not documents:
            return []
        reranker = self._lazy.get()
        candidates = self._candidates(documents, reranker.accepts_images)
        results = reranker.rank(query, candidates, top_n=self.top_n, score_threshold=self.score_threshold)
        return self._to_documents(documents, results)

    async def acompress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Optional[Callbacks] = None,
    ) -> Sequence[Document]:
        """Async `compress_documents`: awaits the backend's `arank` (real async I/O for HTTP
        backends, a worker thread for in-process models)."""
        if not documents:
            return []
        if not self._lazy.built:  # loading weights must not stall the event loop
            await asyncio.to_thread(self._lazy.get)
        reranker = self._lazy.get()
        candidates = self._candidates(documents, reranker.accepts_images)
        results = await reranker.arank(query, candidates, top_n=self.top_n, score_threshold=self.score_threshold)
        return self._to_documents(documents, results)

    # ------------------------------------------------------------------ conversion

    def _candidates(self, documents: Sequence[Document], wants_image: bool) -> List[Candidate]:
        return documents_to_candidates(documents, wants_image=wants_image, first_stage_score_key=self.first_stage_score_key)

    def _to_documents(self, documents: Sequence[Document], results: RankedResults) -> List[Document]:
        out = []
        for result in results:
            source = documents[result.index]
            metadata = copy.deepcopy(source.metadata)
            if RELEVANCE_SCORE_KEY in metadata:
                metadata.setdefault(RETRIEVAL_SCORE_KEY, metadata[RELEVANCE_SCORE_KEY])
            metadata[RELEVANCE_SCORE_KEY] = result.relevance
            out.append(source.model_copy(update={"metadata": metadata}))
        return out


def first_stage_score(metadata: Dict[str, Any], key: Optional[str] = "score") -> Any:
    """The retriever's score in `metadata`: under `key`, else an earlier ``relevance_score``."""
    for name in (key, RELEVANCE_SCORE_KEY):
        value = metadata.get(name) if name else None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
    return None


def documents_to_candidates(
    documents: Sequence[Document], wants_image: bool = False, first_stage_score_key: Optional[str] = "score"
) -> List[Candidate]:
    """One `Candidate` per document, in order: `page_content` as text, the document id,
    the first-stage score, and the page image its metadata names (see `image_from_metadata`)."""
    if isinstance(documents, (str, Document)):
        raise TypeError("documents must be a sequence of Documents, not a single item")
    candidates = []
    pdfs = PdfPageSource()
    for i, doc in enumerate(documents):
        if not isinstance(doc, Document):
            raise TypeError(f"document {i} is a {type(doc).__name__}; expected a langchain_core Document")
        image = image_from_metadata(doc.metadata)
        text = None if (not doc.page_content and image is not None) else doc.page_content
        candidates.append(
            make_candidate(
                i,
                text=text,
                image=image,
                wants_image=wants_image,
                pdfs=pdfs,
                id=doc.id,
                score=first_stage_score(doc.metadata, first_stage_score_key),
                metadata=doc.metadata,
            )
        )
    return candidates


__all__ = ["RankbridgeCompressor", "documents_to_candidates"]
