"""`HybridRetriever` as a LlamaIndex or LangChain retriever, so a chain reads retriever -> reranker.

The framework classes are imported inside the factories: importing this module needs neither.
"""

from __future__ import annotations

from typing import Any

from rankbridge.rerankers.core.errors import require
from rankbridge.rerankers.core.types import Candidate


def llama_index_retriever(retriever: Any, limit: int = 100, filter: Any = None, mode: str | None = None):
    """A `llama_index.core.retrievers.BaseRetriever` over `retriever` (a `HybridRetriever`).

    Nodes are `TextNode`s with ``id_`` = the document id, the payload as metadata, and the
    first-stage score as the `NodeWithScore` score.
    """
    require("llama_index.core", extra="llama-index", package="llama-index-core")
    from llama_index.core.retrievers import BaseRetriever
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

    class QdrantHybridRetriever(BaseRetriever):
        """rankbridge's Qdrant hybrid first stage as a LlamaIndex retriever."""

        def __init__(self) -> None:
            super().__init__()
            self.hybrid = retriever

        def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
            hits = self.hybrid.search(query_bundle.query_str, limit=limit, filter=filter, mode=mode)
            return [NodeWithScore(node=_text_node(TextNode, c), score=c.score) for c in hits]

    return QdrantHybridRetriever()


def _text_node(node_class: Any, candidate: Candidate):
    return node_class(id_=str(candidate.id), text=candidate.text or "", metadata=dict(candidate.metadata))


def langchain_retriever(retriever: Any, limit: int = 100, filter: Any = None, mode: str | None = None):
    """A `langchain_core.retrievers.BaseRetriever` over `retriever` (a `HybridRetriever`).

    Documents carry ``id`` = the document id, the payload as metadata, and the first-stage
    score in ``metadata["score"]``.
    """
    require("langchain_core", extra="langchain", package="langchain-core")
    from langchain_core.callbacks import CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever

    class QdrantHybridRetriever(BaseRetriever):
        """rankbridge's Qdrant hybrid first stage as a LangChain retriever."""

        hybrid: Any
        limit: int = 100
        filter: Any = None
        mode: str | None = None

        def _get_relevant_documents(
            self, query: str, *, run_manager: CallbackManagerForRetrieverRun
        ) -> list[Document]:
            hits = self.hybrid.search(query, limit=self.limit, filter=self.filter, mode=self.mode)
            return [
                Document(page_content=c.text or "", metadata={**c.metadata, "score": c.score}, id=str(c.id))
                for c in hits
            ]

    return QdrantHybridRetriever(hybrid=retriever, limit=limit, filter=filter, mode=mode)


__all__ = ["langchain_retriever", "llama_index_retriever"]
