"""Real clients against `rankbridge serve`: the official Cohere SDK (sync and async v2 clients)
and LlamaIndex's own CohereRerank postprocessor inside a query engine."""

from __future__ import annotations

import pytest
from serve_support import API_KEY, DOCS, QUERY

from rankbridge.rerankers import load_reranker

cohere = pytest.importorskip("cohere")


def expected(query=QUERY, docs=DOCS, spec="lexical"):
    return load_reranker(spec).rank(query, docs)


def test_client_v2_rerank_matches_in_process(server):
    client = cohere.ClientV2(api_key="unused", base_url=server.url)
    response = client.rerank(model="lexical", query=QUERY, documents=DOCS)
    want = expected()
    assert [r.index for r in response.results] == want.indices
    assert [r.relevance_score for r in response.results] == pytest.approx(want.relevances, abs=1e-12)
    assert response.meta.api_version.version == "2"
    assert response.meta.billed_units.search_units == 1
    assert response.id


def test_client_v2_top_n_and_model_selection(server):
    client = cohere.ClientV2(api_key="unused", base_url=server.url)
    top = client.rerank(model="lexical", query=QUERY, documents=DOCS, top_n=2)
    assert [r.index for r in top.results] == expected().indices[:2]
    ident = client.rerank(model="identity", query=QUERY, documents=DOCS, top_n=10)
    assert [r.index for r in ident.results] == [0, 1, 2, 3, 4]  # identity keeps input order


def test_client_v2_unknown_model_is_404_listing_served_names(server):
    client = cohere.ClientV2(api_key="unused", base_url=server.url)
    with pytest.raises(cohere.core.api_error.ApiError) as info:
        client.rerank(model="rerank-v3.5", query=QUERY, documents=DOCS)
    assert info.value.status_code == 404
    assert "rerank-v3.5" in info.value.body["message"]
    assert "'lexical'" in info.value.body["message"] and "'identity'" in info.value.body["message"]


def test_client_v2_api_key(keyed_server):
    good = cohere.ClientV2(api_key=API_KEY, base_url=keyed_server.url)
    assert len(good.rerank(model="bm25", query=QUERY, documents=DOCS).results) == len(DOCS)
    bad = cohere.ClientV2(api_key="sk-wrong", base_url=keyed_server.url)
    with pytest.raises(cohere.core.api_error.ApiError) as info:
        bad.rerank(model="bm25", query=QUERY, documents=DOCS)
    assert info.value.status_code == 401
    assert "API key" in info.value.body["message"]


async def test_async_client_v2_concurrent(server):
    import asyncio

    client = cohere.AsyncClientV2(api_key="unused", base_url=server.url)
    queries = ["vitamin d bone", "eiffel tower paris", "bananas potassium", "fractures calcium"]
    responses = await asyncio.gather(*(client.rerank(model="lexical", query=q, documents=DOCS) for q in queries))
    for q, response in zip(queries, responses):
        want = expected(q)
        assert [r.index for r in response.results] == want.indices
        assert [r.relevance_score for r in response.results] == pytest.approx(want.relevances, abs=1e-12)


def test_llama_index_cohere_rerank_in_a_query_engine(server):
    pytest.importorskip("llama_index.postprocessor.cohere_rerank")
    from llama_index.core import Document, VectorStoreIndex
    from llama_index.core.embeddings import MockEmbedding
    from llama_index.core.llms import MockLLM
    from llama_index.postprocessor.cohere_rerank import CohereRerank

    embed = MockEmbedding(embed_dim=8)
    index = VectorStoreIndex.from_documents(
        [Document(text=t, id_=f"doc-{i}") for i, t in enumerate(DOCS)], embed_model=embed
    )
    rerank = CohereRerank(model="lexical", top_n=2, api_key="unused", base_url=server.url)
    engine = index.as_query_engine(
        llm=MockLLM(), similarity_top_k=len(DOCS), node_postprocessors=[rerank], embed_model=embed
    )
    response = engine.query(QUERY)
    got = [(n.node.get_content(), n.score) for n in response.source_nodes]
    # what the server reranked is what the retriever handed over, in its order: rank that in-process
    retrieved = index.as_retriever(similarity_top_k=len(DOCS), embed_model=embed).retrieve(QUERY)
    texts = [n.node.get_content(metadata_mode="embed") for n in retrieved]
    want = load_reranker("lexical").rank(QUERY, texts, top_n=2)
    assert [t for t, _ in got] == [retrieved[r.index].node.get_content() for r in want]
    assert [s for _, s in got] == pytest.approx(want.relevances, abs=1e-12)
    assert "vitamin" in got[0][0].lower()
