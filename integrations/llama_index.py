"""LlamaIndex: `RankbridgeRerank` (any rankbridge backend as a node postprocessor) and
`RankbridgeHybridRetriever` (the Qdrant hybrid first stage as a LlamaIndex retriever, with
LlamaIndex's `similarity_top_k`).

Install with ``pip install 'rankbridge[llama-index]'``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Dict, List, Optional, Union

from rankbridge.rerankers.core.errors import require

require("llama_index.core", extra="llama-index", package="llama-index-core")

from llama_index.core.bridge.pydantic import Field, PrivateAttr, StrictInt, field_serializer  # noqa: E402
from llama_index.core.callbacks import CBEventType, EventPayload  # noqa: E402
from llama_index.core.instrumentation import get_dispatcher  # noqa: E402
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent  # noqa: E402
from llama_index.core.postprocessor.types import BaseNodePostprocessor  # noqa: E402
from llama_index.core.retrievers import BaseRetriever  # noqa: E402
from llama_index.core.schema import BaseNode, ImageNode, MetadataMode, NodeWithScore, QueryBundle, TextNode  # noqa: E402

from rankbridge.rerankers.core.base import Reranker  # noqa: E402
from rankbridge.rerankers.core.types import Candidate, RankedResults  # noqa: E402

from rankbridge.integrations.adapters.candidates import (  # noqa: E402
    PdfPageSource,
    copied_metadata,
    image_from_metadata,
    make_candidate,
)
from rankbridge.integrations.adapters.lazy_reranker import LazyReranker, shown_spec  # noqa: E402

dispatcher = get_dispatcher(__name__)

RETRIEVAL_SCORE_KEY = "retrieval_score"


class RankbridgeRerank(BaseNodePostprocessor):
    """Rerank retrieved nodes with any rankbridge backend; the backend is chosen by config.

    Each returned `NodeWithScore` is new and carries the backend's calibrated relevance in
    [0, 1] as its score, best first (ties keep the retrieval order). Its `node` is the
    caller's node, or a copy when `keep_retrieval_score` writes into the metadata: the
    caller's nodes are never modified. Nodes map back by position, so two nodes with the
    same text keep their own scores and identities.

    `ImageNode`s (``image`` base64, ``image_path``, ``image_url``), `Node`s with an
    ``image_resource``, and nodes whose metadata names an image or a PDF page become page
    candidates for page backends (`vlm-page`, `ocr-page`); a text backend given an image
    node without text raises `CandidateError` naming its position.

    Args:
        reranker: a `Reranker`, or any spec `load_reranker` accepts: a YAML/JSON config path,
            a dict, a shorthand such as ``"cross-encoder:minilm-l6-ce-weak"``, or None to read
            ``$RANKBRIDGE_RERANKER``. The spec is validated now; the model loads on first use.
        top_n: keep the best `top_n` nodes; None keeps all.
        score_threshold: drop nodes whose relevance is below this value in [0, 1].
        keep_retrieval_score: copy each node and keep its first-stage score in
            ``metadata["retrieval_score"]`` (excluded from the embed and LLM metadata text).
        metadata_mode: which metadata `node.get_content` puts in the text sent to the
            reranker (default EMBED, like LlamaIndex's own rerankers).

    Example:
        >>> from llama_index.core.schema import NodeWithScore, TextNode
        >>> rerank = RankbridgeRerank(reranker={"backend": "lexical"}, top_n=1)
        >>> nodes = [NodeWithScore(node=TextNode(text=t), score=0.5) for t in ["Bananas are yellow.", "Paris is the capital of France."]]
        >>> [n.node.text for n in rerank.postprocess_nodes(nodes, query_str="capital of France")]
        ['Paris is the capital of France.']
    """

    reranker: Union[str, Dict[str, Any], None] = Field(
        default=None,
        description="The reranker spec as given (config path, dict or shorthand), or the config of "
        "the Reranker passed in; never the model.",
    )
    top_n: Optional[StrictInt] = Field(default=None, gt=0, description="Number of nodes to return; None returns all.")
    score_threshold: Optional[float] = Field(
        default=None,
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,
        strict=True,
        description="Drop nodes whose calibrated relevance is below this.",
    )
    keep_retrieval_score: bool = Field(
        default=False, description="Keep the first-stage score in metadata['retrieval_score'] of a copied node."
    )
    metadata_mode: MetadataMode = Field(
        default=MetadataMode.EMBED, description="Metadata mode for the node text sent to the reranker."
    )

    _lazy: LazyReranker = PrivateAttr()

    @field_serializer("reranker")
    def _serialize_reranker(self, spec: Any) -> Any:
        return shown_spec(spec)  # secrets are written masked, never in plain text

    def __init__(self, reranker: Reranker | str | Dict[str, Any] | os.PathLike | None = None, **kwargs: Any):
        lazy = LazyReranker(reranker)
        super().__init__(reranker=lazy.spec, **kwargs)
        self._lazy = lazy

    @classmethod
    def class_name(cls) -> str:
        return "RankbridgeRerank"

    @property
    def reranker_model_name(self) -> str:
        """``backend`` or ``backend:model``, as reported in rerank events."""
        return self._lazy.model_name

    def get_reranker(self) -> Reranker:
        """The underlying `Reranker`, built now if it was not yet."""
        return self._lazy.get()

    # ------------------------------------------------------------------ postprocessing

    def _postprocess_nodes(
        self,
        nodes: List[NodeWithScore],
        query_bundle: Optional[QueryBundle] = None,
    ) -> List[NodeWithScore]:
        query = _query_of(query_bundle)
        nodes = _as_nodes(nodes)
        if not nodes:
            return []
        reranker = self._lazy.get()
        candidates = nodes_to_candidates(nodes, self.metadata_mode, wants_image=reranker.accepts_images)
        with self._rerank_events(nodes, query_bundle) as finish:
            results = reranker.rank(query, candidates, top_n=self.top_n, score_threshold=self.score_threshold)
            return finish(self._to_nodes(nodes, results))

    async def _apostprocess_nodes(
        self,
        nodes: List[NodeWithScore],
        query_bundle: Optional[QueryBundle] = None,
    ) -> List[NodeWithScore]:
        query = _query_of(query_bundle)
        nodes = _as_nodes(nodes)
        if not nodes:
            return []
        if not self._lazy.built:  # loading weights must not stall the event loop
            await asyncio.to_thread(self._lazy.get)
        reranker = self._lazy.get()
        candidates = nodes_to_candidates(nodes, self.metadata_mode, wants_image=reranker.accepts_images)
        with self._rerank_events(nodes, query_bundle) as finish:
            results = await reranker.arank(query, candidates, top_n=self.top_n, score_threshold=self.score_threshold)
            return finish(self._to_nodes(nodes, results))

    @contextmanager
    def _rerank_events(
        self, nodes: List[NodeWithScore], query_bundle: QueryBundle
    ) -> Iterator[Callable[[List[NodeWithScore]], List[NodeWithScore]]]:
        """ReRankStartEvent / ReRankEndEvent on the instrumentation dispatcher around a
        CBEventType.RERANKING callback event, as LlamaIndex's own rerankers emit them."""
        top_n = self.top_n if self.top_n is not None else len(nodes)
        model_name = self._lazy.model_name
        dispatcher.event(ReRankStartEvent(query=query_bundle, nodes=nodes, top_n=top_n, model_name=model_name))
        done: List[List[NodeWithScore]] = []

        def finish(new_nodes: List[NodeWithScore]) -> List[NodeWithScore]:
            done.append(new_nodes)
            return new_nodes

        with self.callback_manager.event(
            CBEventType.RERANKING,
            payload={
                EventPayload.NODES: nodes,
                EventPayload.MODEL_NAME: model_name,
                EventPayload.QUERY_STR: query_bundle.query_str,
                EventPayload.TOP_K: top_n,
            },
        ) as event:
            yield finish
            event.on_end(payload={EventPayload.NODES: done[0]})
        dispatcher.event(ReRankEndEvent(nodes=done[0]))

    def _to_nodes(self, nodes: List[NodeWithScore], results: RankedResults) -> List[NodeWithScore]:
        out = []
        for result in results:
            source = nodes[result.index]
            node = source.node
            if self.keep_retrieval_score:
                node = _with_retrieval_score(node, source.score)
            out.append(NodeWithScore(node=node, score=result.relevance))
        return out


def _as_nodes(nodes: Any) -> List[NodeWithScore]:
    """Any iterable of `NodeWithScore` (a list, a tuple, a generator) as a list, read once."""
    if isinstance(nodes, (str, bytes, NodeWithScore, BaseNode, dict)):
        raise TypeError(f"nodes must be a sequence of NodeWithScore, not a single {type(nodes).__name__}")
    try:
        items = list(nodes)
    except TypeError:
        raise TypeError(f"nodes must be a sequence of NodeWithScore, not a {type(nodes).__name__}") from None
    for i, item in enumerate(items):
        if not isinstance(item, NodeWithScore):
            raise TypeError(f"node {i} is a {type(item).__name__}; expected a NodeWithScore")
    return items


def _query_of(query_bundle: Optional[QueryBundle]) -> str:
    if query_bundle is None:
        raise ValueError("RankbridgeRerank needs a query: pass query_str= or query_bundle= to postprocess_nodes")
    return query_bundle.query_str


def _with_retrieval_score(node: BaseNode, score: Optional[float]) -> BaseNode:
    metadata = copied_metadata(node.metadata)
    metadata[RETRIEVAL_SCORE_KEY] = score
    return node.model_copy(
        update={
            "metadata": metadata,
            "excluded_embed_metadata_keys": _plus(node.excluded_embed_metadata_keys, RETRIEVAL_SCORE_KEY),
            "excluded_llm_metadata_keys": _plus(node.excluded_llm_metadata_keys, RETRIEVAL_SCORE_KEY),
        }
    )


def _plus(keys: List[str], key: str) -> List[str]:
    return list(keys) if key in keys else [*keys, key]


def node_image(node: BaseNode) -> Any:
    """The page image a node carries, as given, or None: an `ImageNode`'s ``image``
    (base64), ``image_path`` or ``image_url``; a `Node`'s ``image_resource``; else whatever
    its metadata names (see `image_from_metadata`)."""
    if isinstance(node, ImageNode):
        for value in (node.image, node.image_path, node.image_url):
            if value:
                return value
    resource = getattr(node, "image_resource", None)
    if resource is not None:
        if resource.data:
            return resource.data.decode("ascii")  # LlamaIndex stores the bytes base64-encoded
        if resource.path:
            return str(resource.path)
        if resource.url:
            return str(resource.url)
    return image_from_metadata(node.metadata)


def node_text(node: BaseNode, metadata_mode: MetadataMode, has_image: bool = False) -> Optional[str]:
    """The text sent to the reranker; None for an image node whose own text is empty
    (its metadata alone is not a passage)."""
    own_text = getattr(node, "text", None)
    if own_text is None:
        resource = getattr(node, "text_resource", None)
        own_text = resource.text if resource is not None else None
    if not own_text and has_image:
        return None
    return node.get_content(metadata_mode=metadata_mode)


def nodes_to_candidates(
    nodes: List[NodeWithScore], metadata_mode: MetadataMode = MetadataMode.EMBED, wants_image: bool = False
) -> List[Candidate]:
    """One `Candidate` per node, in order: text by `metadata_mode`, the node id, the
    retrieval score as the first-stage score, and the page image (see `node_image`)."""
    candidates = []
    pdfs = PdfPageSource()
    for i, item in enumerate(nodes):
        image = node_image(item.node)
        candidates.append(
            make_candidate(
                i,
                text=node_text(item.node, metadata_mode, has_image=image is not None),
                image=image,
                wants_image=wants_image,
                pdfs=pdfs,
                id=item.node.node_id,
                score=item.score,
                metadata=item.node.metadata,
            )
        )
    return candidates


class RankbridgeHybridRetriever(BaseRetriever):
    """rankbridge's Qdrant hybrid first stage (`HybridRetriever`) as a LlamaIndex retriever.

    Nodes are `TextNode`s with ``id_`` = the document id, the payload as metadata, and the
    first-stage score as the `NodeWithScore` score; `similarity_top_k` of them, as LlamaIndex's
    own retrievers count.

    Example:
        >>> from rankbridge.integrations.first_stage.qdrant import HybridRetriever
        >>> store = HybridRetriever(show_progress=False)
        >>> _ = store.index([{"id": "d1", "text": "Qdrant fuses dense and sparse results."},
        ...                  {"id": "d2", "text": "Bananas are yellow."}])
        >>> [n.node.node_id for n in RankbridgeHybridRetriever(store, similarity_top_k=1).retrieve("fusion")]
        ['d1']
        >>> store.close()
    """

    def __init__(
        self,
        hybrid: Any,
        similarity_top_k: int = 100,
        filter: Any = None,
        mode: Optional[str] = None,
        **kwargs: Any,
    ) -> None:
        if isinstance(similarity_top_k, bool) or not isinstance(similarity_top_k, int) or similarity_top_k < 1:
            raise ValueError(f"similarity_top_k must be a positive int, got {similarity_top_k!r}")
        super().__init__(**kwargs)
        self.hybrid = hybrid
        self.similarity_top_k = similarity_top_k
        self.filter = filter
        self.mode = mode

    def _retrieve(self, query_bundle: QueryBundle) -> List[NodeWithScore]:
        hits = self.hybrid.search(query_bundle.query_str, limit=self.similarity_top_k, filter=self.filter, mode=self.mode)
        return [
            NodeWithScore(node=TextNode(id_=str(c.id), text=c.text or "", metadata=dict(c.metadata)), score=c.score)
            for c in hits
        ]

    async def _aretrieve(self, query_bundle: QueryBundle) -> List[NodeWithScore]:
        return await asyncio.to_thread(self._retrieve, query_bundle)


__all__ = ["RankbridgeHybridRetriever", "RankbridgeRerank", "node_image", "nodes_to_candidates"]
