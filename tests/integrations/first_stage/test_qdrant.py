"""HybridRetriever on real embedded Qdrant (qdrant-edge-py and qdrant-client local mode), real embedders."""

from __future__ import annotations

import math
import statistics

import pytest

pytest.importorskip("qdrant_edge")
pytest.importorskip("qdrant_client")

from rankbridge.integrations.first_stage.embeddings import Bm25Embedder, OnnxDenseEmbedder
from rankbridge.integrations.first_stage.qdrant import HybridRetriever, point_id
from rankbridge.rerankers import Candidate, ConfigError, load_reranker

pytestmark = pytest.mark.slow  # loads the all-MiniLM-L6-v2 weights (ONNX int8)

DOCS = [
    {"id": "d1", "title": "Vitamin D", "text": "Vitamin D supplementation reduces hip fractures in the elderly.", "metadata": {"topic": "health", "year": 2019}},
    {"id": "d2", "title": "Bananas", "text": "Bananas are a yellow fruit rich in potassium.", "metadata": {"topic": "food", "year": 2020}},
    {"id": "d3", "title": "Qdrant", "text": "Qdrant is a vector database with hybrid search over sparse and dense vectors.", "metadata": {"topic": "tech", "year": 2023}},
    {"id": "d4", "title": "Smoking", "text": "Smoking increases the risk of lung cancer and heart disease.", "metadata": {"topic": "health", "year": 2015}},
    {"id": "d5", "title": "BM25", "text": "BM25 ranks documents by term frequency and inverse document frequency.", "metadata": {"topic": "tech", "year": 2009}},
    {"id": "d6", "title": "Calcium", "text": "Calcium and vitamin D together strengthen bones and prevent fractures.", "metadata": {"topic": "health", "year": 2021}},
    {"id": "d7", "title": "Espresso", "text": "Espresso is coffee brewed by forcing hot water through ground beans.", "metadata": {"topic": "food", "year": 2018}},
    {"id": "d8", "title": "Sparse retrieval", "text": "Sparse vectors store term weights; dense vectors store embeddings from a neural encoder.", "metadata": {"topic": "tech", "year": 2022}},
]
STORES = ["edge", "qdrant-client"]


@pytest.fixture(scope="module")
def embedders():
    return OnnxDenseEmbedder(), Bm25Embedder()


@pytest.fixture(params=STORES)
def retriever(request, embedders, tmp_path):
    dense, sparse = embedders
    r = HybridRetriever(tmp_path / "store", store=request.param, dense_embedder=dense, sparse_embedder=sparse, show_progress=False)
    r.index(DOCS)
    yield r
    r.close()


def _rrf(lists, k):
    scores = {}
    for hits in lists:
        for position, c in enumerate(hits):
            scores[c.id] = scores.get(c.id, 0.0) + 1.0 / (k + position)
    return scores


def _dbsf(lists):
    scores = {}
    for hits in lists:
        values = [c.score for c in hits]
        if len(values) == 1:
            normalized = [0.5]
        else:
            mean, std = statistics.mean(values), statistics.stdev(values)
            normalized = [0.5] * len(values) if std == 0 else [(v - (mean - 3 * std)) / (6 * std) for v in values]
        for c, value in zip(hits, normalized):
            scores[c.id] = scores.get(c.id, 0.0) + value
    return scores


def _assert_matches(hits, expected, limit):
    assert [c.score for c in hits] == sorted((c.score for c in hits), reverse=True)
    got = {c.id: c.score for c in hits}
    best = sorted(expected.values(), reverse=True)[:limit]
    assert len(hits) == min(limit, len(expected))
    for doc_id, score in got.items():
        assert score == pytest.approx(expected[doc_id], abs=1e-5), doc_id
    # every document scored above the cut-off made it in
    assert sorted(got.values(), reverse=True) == pytest.approx(best, abs=1e-5)


@pytest.mark.parametrize("k", [2, 60])
def test_rrf_fusion_matches_hand_computation(retriever, k):
    query = "does vitamin D prevent bone fractures"
    dense = retriever.search(query, limit=8, mode="dense")
    sparse = retriever.search(query, limit=8, mode="sparse")
    assert dense and sparse and len(sparse) < len(DOCS)  # BM25 only returns documents sharing a term
    retriever.rrf_k = k
    hybrid = retriever.search(query, limit=5, mode="hybrid")  # each prefetch takes the top 5
    _assert_matches(hybrid, _rrf([dense[:5], sparse[:5]], k), limit=5)
    assert hybrid[0].id in {"d1", "d6"}
    retriever.prefetch_limit = 8
    hybrid = retriever.search(query, limit=5, mode="hybrid")
    _assert_matches(hybrid, _rrf([dense, sparse], k), limit=5)


def test_rrf_default_k_is_qdrant_default(retriever):
    query = "vector database hybrid search"
    dense = retriever.search(query, limit=6, mode="dense")
    sparse = retriever.search(query, limit=6, mode="sparse")
    hybrid = retriever.search(query, limit=6)
    _assert_matches(hybrid, _rrf([dense, sparse], 2), limit=6)
    top_in_both = dense[0].id == sparse[0].id == hybrid[0].id
    assert not top_in_both or hybrid[0].score == pytest.approx(1.0)  # 1/2 + 1/2


def test_dbsf_fusion_matches_hand_computation(retriever):
    query = "sparse and dense vectors for retrieval"
    dense = retriever.search(query, limit=8, mode="dense")
    sparse = retriever.search(query, limit=8, mode="sparse")
    retriever.fusion = "dbsf"
    hybrid = retriever.search(query, limit=8)
    _assert_matches(hybrid, _dbsf([dense, sparse]), limit=8)


def test_candidates_carry_id_text_payload_and_first_stage_score(retriever):
    hits = retriever.search("coffee brewing", limit=3)
    top = hits[0]
    assert isinstance(top, Candidate)
    assert top.id == "d7"
    assert top.text.startswith("Espresso\nEspresso is coffee")
    assert top.metadata == {"topic": "food", "year": 2018, "title": "Espresso"}
    assert isinstance(top.score, float) and top.score > 0
    # a reranker takes them as they are
    ranked = load_reranker("identity").rank("coffee brewing", hits)
    assert ranked.ids == [c.id for c in hits]


def test_indexing_is_idempotent(retriever):
    before = retriever.search("lung cancer", limit=8)
    assert retriever.count() == len(DOCS)
    assert retriever.index(DOCS) == len(DOCS)
    assert retriever.count() == len(DOCS)
    after = retriever.search("lung cancer", limit=8)
    assert [c.id for c in after] == [c.id for c in before]
    assert [c.score for c in after] == pytest.approx([c.score for c in before])
    # re-indexing an id replaces its text and payload
    retriever.index([{"id": "d2", "text": "Lung cancer screening with CT scans.", "metadata": {"topic": "health"}}])
    assert retriever.count() == len(DOCS)
    hit = next(c for c in retriever.search("lung cancer screening", limit=8) if c.id == "d2")
    assert hit.text == "Lung cancer screening with CT scans." and hit.metadata == {"topic": "health"}


def test_point_ids_are_deterministic_and_typed():
    assert point_id("d1") == point_id("d1")
    assert point_id("1") != point_id(1)


@pytest.mark.parametrize("mode", ["hybrid", "dense", "sparse"])
def test_mapping_filter_is_passed_through(retriever, mode):
    query = "vitamin D fractures"
    unfiltered = retriever.search(query, limit=8, mode=mode)
    assert unfiltered[0].metadata["topic"] == "health"
    food = retriever.search(query, limit=8, mode=mode, filter={"topic": "food"})
    assert all(c.metadata["topic"] == "food" for c in food)
    either = retriever.search(query, limit=8, mode="dense", filter={"topic": ["food", "tech"]})
    assert {c.metadata["topic"] for c in either} == {"food", "tech"} and len(either) == 5


def test_qdrant_client_filter_is_passed_through(retriever):
    from qdrant_client import models

    flt = models.Filter(
        must=[models.FieldCondition(key="year", range=models.Range(gte=2019))],
        must_not=[models.FieldCondition(key="topic", match=models.MatchValue(value="tech"))],
    )
    hits = retriever.search("fruit and coffee", limit=8, mode="dense", filter=flt)
    assert sorted(c.id for c in hits) == ["d1", "d2", "d6"]


def test_search_many_equals_search(retriever):
    queries = ["vitamin D", "vector database", "coffee"]
    batched = retriever.search_many(queries, limit=4, batch_size=2)
    assert [[c.id for c in hits] for hits in batched] == [[c.id for c in retriever.search(q, limit=4)] for q in queries]


def test_query_without_bm25_terms_falls_back_to_dense_inside_hybrid(retriever):
    assert retriever.search("the of and", mode="sparse") == []
    hybrid = retriever.search("the of and", limit=3)
    dense = retriever.search("the of and", limit=3, mode="dense")
    assert [c.id for c in hybrid] == [c.id for c in dense]
    assert [c.score for c in hybrid] == pytest.approx([1 / 2, 1 / 3, 1 / 4])


def test_store_persists_and_rejects_other_embedders(embedders, tmp_path):
    dense, sparse = embedders
    with HybridRetriever(tmp_path, dense_embedder=dense, sparse_embedder=sparse, show_progress=False) as r:
        r.index(DOCS[:3])
    with HybridRetriever(tmp_path, dense_embedder=dense, sparse_embedder=sparse, show_progress=False) as r:
        assert r.count() == 3
        assert r.search("bananas", limit=1)[0].id == "d2"
    other_bm25 = Bm25Embedder(k=0.9)
    with pytest.raises(ConfigError, match="other embedders"):
        HybridRetriever(tmp_path, dense_embedder=dense, sparse_embedder=other_bm25)


def test_bad_arguments_name_the_problem(embedders, tmp_path):
    dense, sparse = embedders
    kwargs = {"dense_embedder": dense, "sparse_embedder": sparse}
    with pytest.raises(ConfigError, match="mode"):
        HybridRetriever(tmp_path / "a", mode="bm25", **kwargs)
    with pytest.raises(ConfigError, match="rrf_k"):
        HybridRetriever(tmp_path / "b", rrf_k=0, **kwargs)
    with pytest.raises(ConfigError, match="url"):
        HybridRetriever(url="http://localhost:6333", store="edge", **kwargs)
    with HybridRetriever(tmp_path / "c", show_progress=False, **kwargs) as r:
        with pytest.raises(ValueError, match="document 1 has no id"):
            r.index([{"id": "x", "text": "fine"}, {"text": "no id"}])
        with pytest.raises(ValueError, match="reserved"):
            r.index([{"id": "x", "text": "t", "metadata": {"doc_id": 3}}])
        with pytest.raises(ConfigError, match="filter"):
            r.search("q", filter=["topic"])
        with pytest.raises(TypeError, match="list of queries"):
            r.search_many("one query")


def test_llama_index_retriever(retriever):
    from llama_index.core.retrievers import BaseRetriever
    from llama_index.core.schema import NodeWithScore

    li = retriever.as_llama_index(limit=3, filter={"topic": "health"})
    assert isinstance(li, BaseRetriever)
    nodes = li.retrieve("vitamin D and bones")
    assert all(isinstance(n, NodeWithScore) for n in nodes)
    assert [n.node.node_id for n in nodes] == [c.id for c in retriever.search("vitamin D and bones", limit=3, filter={"topic": "health"})]
    assert nodes[0].node.metadata["topic"] == "health"
    assert math.isclose(nodes[0].score, retriever.search("vitamin D and bones", limit=1, filter={"topic": "health"})[0].score)


def test_langchain_retriever(retriever):
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever

    lc = retriever.as_langchain(limit=2, mode="dense")
    assert isinstance(lc, BaseRetriever)
    docs = lc.invoke("espresso coffee")
    assert all(isinstance(d, Document) for d in docs) and len(docs) == 2
    assert docs[0].id == "d7" and docs[0].metadata["topic"] == "food" and docs[0].metadata["score"] > 0
