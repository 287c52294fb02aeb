"""The LlamaIndex and LangChain adapters, unchanged, with a rerank-service backend (FAKE Cohere)."""

from __future__ import annotations

import pytest
from conftest import KEY
from support.fake_rerank_apis import fake_relevance

QUERY = "what is the capital of france"
TEXTS = ["Bananas are yellow.", "Paris is the capital of France.", "France is in Europe.", "Berlin is in Germany."]


def expected():
    scores = [fake_relevance(QUERY, t) for t in TEXTS]
    return sorted(range(len(TEXTS)), key=lambda i: (-scores[i], i)), scores


def spec(server):
    return {"backend": "cohere", "model": "rerank-v3.5", "base_url": server.base_url, "api_key": KEY}


def test_llama_index_postprocessor_with_cohere(fake):
    pytest.importorskip("llama_index.core")
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

    from rankbridge.integrations.llama_index import RankbridgeRerank

    server = fake("cohere")
    nodes = [NodeWithScore(node=TextNode(text=t, id_=f"n{i}"), score=1.0 - i / 10) for i, t in enumerate(TEXTS)]
    out = RankbridgeRerank(reranker=spec(server), top_n=2).postprocess_nodes(nodes, query_bundle=QueryBundle(QUERY))
    order, scores = expected()
    assert [n.node.node_id for n in out] == [f"n{i}" for i in order[:2]]
    assert [n.score for n in out] == pytest.approx([scores[i] for i in order[:2]])
    assert len(server.requests) == 1 and len(server.bodies[0]["documents"]) == 4


async def test_langchain_compressor_with_cohere(fake):
    pytest.importorskip("langchain_core")
    from langchain_core.documents import Document

    from rankbridge.integrations.langchain import RankbridgeCompressor

    server = fake("cohere")
    docs = [Document(page_content=t, id=f"d{i}", metadata={"source": i}) for i, t in enumerate(TEXTS)]
    compressor = RankbridgeCompressor(reranker=spec(server), top_n=3)
    order, scores = expected()
    out = compressor.compress_documents(docs, QUERY)
    assert [d.id for d in out] == [f"d{i}" for i in order[:3]]
    assert [d.metadata["relevance_score"] for d in out] == pytest.approx([scores[i] for i in order[:3]])
    assert [d.metadata["source"] for d in out] == order[:3]  # metadata carried through
    aout = await compressor.acompress_documents(docs, QUERY)  # the async path: real async HTTP
    assert [d.id for d in aout] == [d.id for d in out]
    assert len(server.requests) == 2
