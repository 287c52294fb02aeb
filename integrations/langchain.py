"""LangChain: `RankbridgeCompressor` (any rankbridge backend as a reranking step) and
`RankbridgeHybridRetriever` (the Qdrant hybrid first stage as a LangChain retriever, with
LangChain's `k`).

Imports only from `langchain_core`. Install with ``pip install 'rankbridge[langchain]'``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Any, Dict, List, Optional, Union

from rankbridge.rerankers.core.errors import require

require("langchain_core", extra="langchain", package="langchain-core")

from langchain_core.callbacks import (  # noqa: E402
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
    Callbacks,
)
from langchain_core.documents import BaseDocumentCompressor, Document  # noqa: E402
from langchain_core.retrievers import BaseRetriever  # noqa: E402
from pydantic import ConfigDict, Field, PrivateAttr, StrictInt, field_serializer  # noqa: E402

from rankbridge.rerankers.core.base import Reranker  # noqa: E402
from rankbridge.rerankers.core.types import Candidate, RankedResults  # noqa: E402

from rankbridge.integrations.adapters.candidates import (  # noqa: E402
    PdfPageSource,
    copied_metadata,
    image_from_metadata,
    make_candidate,
)
from rankbridge.integrations.adapters.lazy_reranker import LazyReranker, shown_spec  # noqa: E402

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
    top_n: Optional[StrictInt] = Field(default=None, gt=0, description="Number of documents to return; None returns all.")
    score_threshold: Optional[float] = Field(
        default=None,
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,
        strict=True,
        description="Drop documents whose calibrated relevance is below this.",
    )
    first_stage_score_key: Optional[str] = Field(
        default="score", description="Metadata key of the first-stage score, if the retriever writes one."
    )

    _lazy: LazyReranker = PrivateAttr()

    @field_serializer("reranker")
    def _serialize_reranker(self, spec: Any) -> Any:
        return shown_spec(spec)  # secrets are written masked, never in plain text

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
        documents = _as_documents(documents)
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
        documents = _as_documents(documents)
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
            metadata = copied_metadata(source.metadata)
            if RELEVANCE_SCORE_KEY in metadata:
                metadata.setdefault(RETRIEVAL_SCORE_KEY, metadata[RELEVANCE_SCORE_KEY])
            metadata[RELEVANCE_SCORE_KEY] = result.relevance
            out.append(source.model_copy(update={"metadata": metadata}))
        return out


def _as_documents(documents: Any) -> List[Document]:
    """Any iterable of Documents (a list, a tuple, a generator) as a list, read once."""
    if isinstance(documents, (str, bytes, Document, dict)):
        raise TypeError(f"documents must be a sequence of Documents, not a single {type(documents).__name__}")
    try:
        return list(documents)
    except TypeError:
        raise TypeError(f"documents must be a sequence of Documents, not a {type(documents).__name__}") from None


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


class RankbridgeHybridRetriever(BaseRetriever):
    """rankbridge's Qdrant hybrid first stage (`HybridRetriever`) as a LangChain retriever.

    Documents carry ``id`` = the document id, the payload as metadata, and the first-stage
    score in ``metadata["score"]`` (what `RankbridgeCompressor` reads). The number of documents
    is LangChain's `k`: set on the retriever, or per call as ``invoke(query, k=...)``.

    Example:
        >>> from rankbridge.integrations.first_stage.qdrant import HybridRetriever
        >>> store = HybridRetriever(show_progress=False)
        >>> _ = store.index([{"id": "d1", "text": "Qdrant fuses dense and sparse results."},
        ...                  {"id": "d2", "text": "Bananas are yellow."}])
        >>> retriever = RankbridgeHybridRetriever(hybrid=store, k=2)
        >>> len(retriever.invoke("fusion")), len(retriever.invoke("fusion", k=1))
        (2, 1)
        >>> store.close()
    """

    hybrid: Any = Field(description="The `HybridRetriever` searched.")
    k: StrictInt = Field(default=100, gt=0, description="Number of documents to return.")
    filter: Any = Field(default=None, description="Payload filter passed to `HybridRetriever.search`.")
    mode: Optional[str] = Field(default=None, description="'hybrid', 'dense' or 'sparse'; None: the store's mode.")

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        k: Optional[int] = None,
        filter: Any = None,
        mode: Optional[str] = None,
    ) -> List[Document]:
        limit = self.k if k is None else _check_k(k)
        hits = self.hybrid.search(
            query, limit=limit, filter=self.filter if filter is None else filter, mode=mode or self.mode
        )
        return [
            Document(page_content=c.text or "", metadata={**c.metadata, "score": c.score}, id=str(c.id)) for c in hits
        ]

    async def _aget_relevant_documents(
        self,
        query: str,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        k: Optional[int] = None,
        filter: Any = None,
        mode: Optional[str] = None,
    ) -> List[Document]:
        return await asyncio.to_thread(
            self._get_relevant_documents, query, run_manager=run_manager.get_sync(), k=k, filter=filter, mode=mode
        )


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    return k


__all__ = ["RankbridgeCompressor", "RankbridgeHybridRetriever", "documents_to_candidates"]
