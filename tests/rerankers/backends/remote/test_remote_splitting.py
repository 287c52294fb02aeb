"""Long candidate lists: split past each API's limits into concurrent sub-requests, mapped back
by index, every candidate accounted for, usage summed."""

from __future__ import annotations

import json

import pytest
from support.fake_rerank_apis import fake_relevance, fake_tokens

from rankbridge.rerankers import RankedResults
from rankbridge.rerankers.runtime import rerank_apis as apis
from rankbridge.rerankers.runtime.rerank_http import estimate_tokens, plan_requests

QUERY = "capital city of france paris"
WORDS = ["capital", "city", "of", "france", "paris", "banana", "river", "mountain"]


def corpus(n: int) -> list[str]:
    # Distinct texts with varied overlap with the query.
    return [" ".join(WORDS[(i * k) % len(WORDS)] for k in range(1, 2 + i % 6)) + f" doc{i}" for i in range(n)]


def expected_order(docs, query=QUERY):
    scores = [fake_relevance(query, d) for d in docs]
    return sorted(range(len(docs)), key=lambda i: (-scores[i], i)), scores


def test_2500_candidates_through_cohere_in_sub_requests_of_at_most_1000(fake, remote):
    server = fake("cohere")
    docs = corpus(2500)
    results = remote(server, "cohere").rank(QUERY, docs)
    sizes = [len(body["documents"]) for body in server.bodies]
    assert sorted(sizes) == [500, 1000, 1000] and max(sizes) <= 1000
    # each sub-request carries a consecutive slice, in input order
    sent = sorted(server.bodies, key=lambda b: docs.index(b["documents"][0]))
    assert [d for body in sent for d in body["documents"]] == docs
    order, scores = expected_order(docs)
    assert len(results) == 2500 and sorted(results.indices) == list(range(2500))
    assert results.indices == order
    assert [r.text for r in results] == [docs[i] for i in order]
    assert results.relevances == pytest.approx([scores[i] for i in order])
    assert results.usage == {"search_units": 25.0, "requests": 3.0}  # 10 + 10 + 5
    # the cost survives serialization and top(): a saved result still says what it billed
    saved = RankedResults.from_dict(json.loads(json.dumps(results.to_dict())))
    assert saved.usage == results.usage and saved.indices == results.indices
    assert results.top(3).usage == results.usage


def test_top_n_is_applied_after_every_score_came_back(fake, remote):
    server = fake("cohere")
    docs = corpus(2500)
    results = remote(server, "cohere").rank(QUERY, docs, top_n=5)
    assert all("top_n" not in body for body in server.bodies)
    assert results.indices == expected_order(docs)[0][:5]


def test_voyage_splits_at_its_600k_token_total(fake, remote):
    server = fake("voyage")
    docs = [f"paris capital {i} " + "lorem ipsum dolor sit amet " * 400 for i in range(300)]  # ~2.7K tokens each
    results = remote(server, "voyage").rank(QUERY, docs)
    assert len(server.requests) >= 2
    for body in server.bodies:  # the FAKE would have answered 400 past 600K
        total = fake_tokens(body["query"]) * len(body["documents"]) + sum(fake_tokens(d) for d in body["documents"])
        assert total <= apis.VOYAGE_MAX_TOTAL_TOKENS
    assert sum(len(b["documents"]) for b in server.bodies) == 300
    assert results.indices == expected_order(docs)[0]


def test_rank_many_splits_each_query_and_keeps_them_apart(fake, remote):
    server = fake("jina")
    docs_a, docs_b = corpus(1500), corpus(7)
    a, b = remote(server, "jina").rank_many([QUERY, "banana river"], [docs_a, docs_b])
    assert sorted(len(body["documents"]) for body in server.bodies) == [7, 500, 1000]
    assert a.indices == expected_order(docs_a)[0]
    assert b.indices == expected_order(docs_b, "banana river")[0]
    assert a.usage["requests"] == 2 and b.usage["requests"] == 1


def test_estimate_is_never_below_the_services_count():
    for text in ["", "a", "Paris is the capital of France.", "日本語のテキスト" * 50, "x" * 10_000]:
        assert estimate_tokens(text) >= fake_tokens(text)


def test_a_document_over_the_total_alone_gets_its_own_request():
    assert plan_requests(3, max_documents=10, max_total_tokens=100, query_tokens=1, document_tokens=[10, 500, 10]) == [
        (0, 1), (1, 2), (2, 3)
    ]
