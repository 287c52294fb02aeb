"""Round trip: rankbridge's own `cohere` (v2 and v1) and `tei` backends pointed at
`rankbridge serve` give the ranking and relevance of the served backend called in-process."""

from __future__ import annotations

import pytest
from serve_support import API_KEY, DOCS, QUERY

from rankbridge.rerankers import load_reranker

QUERIES = [QUERY, "eiffel tower paris", "bananas potassium", "bone density age"]


@pytest.fixture(params=["cohere-v2", "cohere-v1", "tei"])
def client_spec(request, keyed_server):
    base = {"base_url": keyed_server.url, "api_key": API_KEY, "max_retries": 0}
    if request.param == "cohere-v2":
        return {"backend": "cohere", "model": "bm25", **base}
    if request.param == "cohere-v1":
        return {"backend": "cohere", "model": "bm25", "api_version": "v1", **base}
    return {"backend": "tei", **base}


def test_client_backend_matches_the_served_backend(client_spec):
    served = load_reranker("lexical")
    with load_reranker(client_spec) as remote:
        for query in QUERIES:
            got, want = remote.rank(query, DOCS), served.rank(query, DOCS)
            assert got.indices == want.indices
            assert got.relevances == pytest.approx(want.relevances, abs=1e-12)
        many = remote.rank_many(QUERIES, [DOCS] * len(QUERIES), top_n=2)
        assert [r.indices for r in many] == [served.rank(q, DOCS).indices[:2] for q in QUERIES]


async def test_async_client_backend_round_trip(client_spec):
    served = load_reranker("lexical")
    async with load_reranker(client_spec) as remote:
        got = await remote.arank(QUERY, DOCS, top_n=3)
    want = served.rank(QUERY, DOCS, top_n=3)
    assert got.indices == want.indices
    assert got.relevances == pytest.approx(want.relevances, abs=1e-12)


def test_a_wrong_key_is_a_clear_backend_error(keyed_server):
    from rankbridge.rerankers import BackendError

    remote = load_reranker({"backend": "cohere", "model": "bm25", "base_url": keyed_server.url, "api_key": "sk-wrong", "max_retries": 0})
    with pytest.raises(BackendError) as info:
        remote.rank(QUERY, DOCS)
    assert "401" in str(info.value) and "sk-wrong" not in str(info.value)
