"""Each rerank-service backend against its strict FAKE service: what goes on the wire, how the
answer maps back by index, usage, limits, images and the config rules per API."""

from __future__ import annotations

import asyncio
import base64
import io
import math

import httpx
import pytest
from conftest import KEY
from support.fake_rerank_apis import fake_logit, fake_relevance

from rankbridge.rerankers import CandidateError, ConfigError, load_reranker
from rankbridge.rerankers.core.types import Candidate

QUERY = "what is the capital of france"
DOCS = [
    "Bananas are yellow.",
    "Paris is the capital of France.",
    "France is a country in Europe.",
    "The capital of Germany is Berlin.",
    "What a lovely day.",
]
BACKENDS = ["cohere", "voyage", "jina", "tei", "vllm-rerank", "infinity"]


def expected_order(query=QUERY, docs=DOCS, score=fake_relevance):
    scores = [score(query, d) for d in docs]
    return sorted(range(len(docs)), key=lambda i: (-scores[i], i)), scores


@pytest.mark.parametrize("backend", BACKENDS)
def test_ranks_by_the_services_scores_mapped_back_by_index(fake, remote, backend):
    server = fake(backend)
    reranker = remote(server, backend)
    results = reranker.rank(QUERY, DOCS)
    order, scores = expected_order()
    assert results.indices == order
    assert [r.text for r in results] == [DOCS[i] for i in order]
    assert results.relevances == pytest.approx([scores[i] for i in order])
    assert results.scores == pytest.approx([scores[i] for i in order])  # the service's probability
    assert len(server.requests) == 1
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"
    assert results.usage["requests"] == 1


def test_cohere_v2_request_and_usage(fake, remote):
    server = fake("cohere")
    results = remote(server, "cohere", max_tokens_per_doc=512).rank(QUERY, DOCS, top_n=2)
    assert server.requests[0].path == "/v2/rerank"
    # every score is asked for (no top_n on the wire); the base applies top_n
    assert server.bodies[0] == {"model": "rerank-v3.5", "query": QUERY, "documents": DOCS, "max_tokens_per_doc": 512}
    assert len(results) == 2 and results.num_candidates == len(DOCS)
    assert results.usage == {"search_units": 1.0, "requests": 1.0}


def test_fake_cohere_v2_rejects_unknown_fields_like_the_service(fake):
    server = fake("cohere")
    body = {"model": "rerank-v3.5", "query": "q", "documents": ["a"], "return_documents": True}
    response = httpx.post(server.origin + "/v2/rerank", json=body, headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == 422
    assert response.json()["message"] == "unknown field: parameter 'return_documents' is not a valid field"


def test_cohere_v1_route(fake, remote):
    server = fake("cohere-v1")
    results = remote(server, "cohere", api_version="v1").rank(QUERY, DOCS)
    assert server.requests[0].path == "/v1/rerank"
    assert results.indices == expected_order()[0]


def test_voyage_top_k_data_truncation_and_instruction(fake, remote):
    server = fake("voyage")
    results = remote(server, "voyage", instruction="Prefer encyclopedic passages.").rank(QUERY, DOCS, top_n=3)
    body = server.bodies[0]
    assert server.requests[0].path == "/v1/rerank"
    assert body["query"] == "Prefer encyclopedic passages.\n" + QUERY
    assert body["truncation"] is True and "top_k" not in body and "top_n" not in body
    order, _ = expected_order(body["query"])
    assert results.indices == order[:3]
    assert results.usage["total_tokens"] > 0


def test_jina_asks_for_every_score_without_documents_back(fake, remote):
    server = fake("jina")
    remote(server, "jina").rank(QUERY, DOCS, top_n=1)
    body = server.bodies[0]
    assert body["top_n"] == len(DOCS) and body["return_documents"] is False


def test_tei_bare_array_and_compute_tokens_header(fake, remote):
    server = fake("tei", api_key=None)
    results = remote(server, "tei", api_key=None).rank(QUERY, DOCS)
    body = server.bodies[0]
    assert body["texts"] == DOCS and body["truncate"] is True and body["raw_scores"] is False
    assert "authorization" not in server.requests[0].headers
    assert results.usage["compute_tokens"] > 0


def test_tei_raw_scores_are_logits_with_sigmoid_relevance(fake, remote):
    server = fake("tei", api_key=None)
    results = remote(server, "tei", api_key=None, raw_scores=True).rank(QUERY, DOCS)
    order, logits = expected_order(score=fake_logit)
    assert results.indices == order
    assert results.scores == pytest.approx([logits[i] for i in order])
    assert results.relevances == pytest.approx([1 / (1 + math.exp(-logits[i])) for i in order])


def test_tei_over_its_batch_limit_is_a_422_naming_the_limit(fake, remote):
    server = fake("tei", api_key=None)
    reranker = remote(server, "tei", api_key=None, max_documents_per_request=33)
    with pytest.raises(Exception) as info:
        reranker.rank(QUERY, [f"doc {i}" for i in range(33)])
    message = str(info.value)
    assert "TEI" in message and "HTTP 422" in message
    assert "batch size 33 > maximum allowed batch size 32 (Validation)" in message
    assert len(server.requests) == 1  # a 4xx is never retried


def test_tei_splits_at_32_texts(fake, remote):
    server = fake("tei", api_key=None)
    docs = [f"capital document {i} " + "x" * i for i in range(70)]
    results = remote(server, "tei", api_key=None).rank(QUERY, docs)
    # the sub-requests go out concurrently, so they arrive in any order
    assert sorted(len(b["texts"]) for b in server.bodies) == [6, 32, 32]
    sent = sorted(server.bodies, key=lambda b: docs.index(b["texts"][0]))
    assert [t for body in sent for t in body["texts"]] == docs  # consecutive slices, in input order
    assert sorted(results.indices) == list(range(70))
    assert results.indices == expected_order(docs=docs)[0]


def test_vllm_truncation_instruction_and_url(fake, remote):
    server = fake("vllm-rerank", api_key=None)
    long_doc = "capital " * 3000
    reranker = remote(server, "vllm-rerank", api_key=None, model="minilm", instruction="Judge relevance.")
    results = reranker.rank(QUERY, [long_doc, "Paris is the capital of France."])
    body = server.bodies[0]
    assert server.requests[0].path == "/v1/rerank"
    assert body["truncate_prompt_tokens"] == -1 and body["instruction"] == "Judge relevance." and body["model"] == "minilm"
    assert len(results) == 2


def test_vllm_without_truncation_gets_the_servers_400(fake, remote):
    server = fake("vllm-rerank", api_key=None)
    reranker = remote(server, "vllm-rerank", api_key=None, truncate=False)
    with pytest.raises(Exception, match=r"vLLM rejected .* HTTP 400: This model's maximum context length is 512"):
        reranker.rank(QUERY, ["capital " * 3000])


def test_vllm_base_url_ending_in_v1(fake):
    server = fake("vllm-rerank", api_key=None)
    reranker = load_reranker({"backend": "vllm-rerank", "base_url": server.origin + "/v1"})
    try:
        reranker.rank(QUERY, DOCS)
    finally:
        reranker.close()
    assert server.requests[0].path == "/v1/rerank"


def _png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), "white").save(buffer, format="PNG")
    return buffer.getvalue()


def test_page_images_go_to_jina_as_base64(fake, remote):
    pytest.importorskip("PIL")
    server = fake("jina")
    png = _png()
    cands = [Candidate(text="Paris is the capital of France."), Candidate(image=png), Candidate(image="https://example.com/p.png")]
    results = remote(server, "jina", model="jina-reranker-m0").rank(QUERY, cands)
    docs = server.bodies[0]["documents"]
    assert docs[0] == "Paris is the capital of France."
    assert set(docs[1]) == {"image"} and base64.b64decode(docs[1]["image"])[:8] == b"\x89PNG\r\n\x1a\n"
    assert docs[2] == {"image": "https://example.com/p.png"}
    assert sorted(results.indices) == [0, 1, 2]


def test_page_images_go_to_vllm_as_image_url_parts(fake, remote):
    pytest.importorskip("PIL")
    server = fake("vllm-rerank", api_key=None)
    results = remote(server, "vllm-rerank", api_key=None).rank(QUERY, [Candidate(image=_png()), "Paris is the capital."])
    doc = server.bodies[0]["documents"][0]
    part = doc["content"][0]
    assert part["type"] == "image_url" and part["image_url"]["url"].startswith("data:image/png;base64,")
    assert server.bodies[0]["documents"][1] == "Paris is the capital."
    assert sorted(results.indices) == [0, 1]


@pytest.mark.parametrize("backend", ["cohere", "voyage", "tei", "infinity"])
def test_text_only_apis_reject_page_images_naming_the_index(fake, remote, backend):
    server = fake(backend)
    reranker = remote(server, backend)
    with pytest.raises(CandidateError, match=r"candidate 1 is a page image") as info:
        reranker.rank(QUERY, ["text", Candidate(text="ocr text", image=b"\x89PNG")])
    assert info.value.index == 1
    assert server.requests == []  # nothing was sent


@pytest.mark.parametrize(
    "backend, fields, needle",
    [
        ("cohere", {"instruction": "x"}, "Cohere rerank API has no instruction"),
        ("jina", {"instruction": "x"}, "Jina rerank API has no instruction"),
        ("tei", {"instruction": "x"}, "TEI rerank API has no instruction"),
        ("infinity", {"instruction": "x"}, "Infinity rerank API has no instruction"),
        ("voyage", {"max_tokens_per_doc": 100}, "Voyage rerank API has no per-document token limit"),
        ("tei", {"max_tokens_per_doc": 100}, "TEI rerank API has no per-document token limit"),
        ("cohere", {"api_version": "v1", "max_tokens_per_doc": 100}, "v1 rerank API has no max_tokens_per_doc"),
        ("cohere", {"max_documents_per_request": 20_000}, "at most 10000 documents"),
        ("voyage", {"max_documents_per_request": 1001}, "at most 1000 documents"),
    ],
)
def test_fields_an_api_does_not_have_are_config_errors_naming_it(backend, fields, needle):
    spec = {"backend": backend, "model": "m", "api_key": KEY, "base_url": "http://127.0.0.1:9", **fields}
    with pytest.raises(ConfigError, match=needle):
        load_reranker(spec)


def test_shorthand_and_provider_defaults(monkeypatch):
    monkeypatch.delenv("COHERE_API_KEY", raising=False)
    monkeypatch.setenv("CO_API_KEY", KEY)
    reranker = load_reranker("cohere:rerank-v3.5")
    assert reranker.config.model == "rerank-v3.5"
    assert reranker.config.base_url == "https://api.cohere.com"
    assert reranker.config.api_key.get_secret_value() == KEY
    assert reranker.client.url == "https://api.cohere.com/v2/rerank"
    assert reranker.config.max_documents_per_request == 1000
    monkeypatch.setenv("COHERE_API_KEY", "first-" + KEY)
    assert load_reranker("cohere:rerank-v3.5").config.api_key.get_secret_value() == "first-" + KEY
    defaults = {
        "voyage": ("https://api.voyageai.com/v1", 1000, "VOYAGE_API_KEY"),
        "jina": ("https://api.jina.ai/v1", 1000, "JINA_API_KEY"),
    }
    for backend, (url, limit, env) in defaults.items():
        monkeypatch.setenv(env, KEY)
        config = load_reranker(f"{backend}:some-model").config
        assert (config.base_url, config.max_documents_per_request) == (url, limit)
    assert load_reranker({"backend": "tei", "base_url": "http://h:1"}).config.max_documents_per_request == 32


def test_public_endpoint_without_a_key_is_a_config_error(monkeypatch):
    for name in ("COHERE_API_KEY", "CO_API_KEY", "VOYAGE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="COHERE_API_KEY or CO_API_KEY"):
        load_reranker("cohere:rerank-v3.5")
    with pytest.raises(ConfigError, match="VOYAGE_API_KEY"):
        load_reranker("voyage:rerank-2.5")
    # a self-hosted Cohere-compatible server needs none
    load_reranker({"backend": "cohere", "model": "m", "base_url": "http://127.0.0.1:9"})


@pytest.mark.parametrize("backend, base", [("tei", None), ("vllm-rerank", None), ("infinity", None)])
def test_self_hosted_backends_need_a_base_url(backend, base):
    with pytest.raises(ConfigError, match="field 'base_url'.*Field required"):
        load_reranker({"backend": backend})


async def test_arank_and_rank_many_send_queries_concurrently(fake, remote):
    server = fake("cohere", delay_s=1.0)  # long enough that all four overlap on a loaded CI machine
    reranker = remote(server, "cohere", max_concurrency=4)
    queries = [QUERY, "bananas", "berlin germany", "europe"]
    many = await asyncio.to_thread(reranker.rank_many, queries, [DOCS] * 4)
    assert server.max_in_flight == 4
    for query, results in zip(queries, many):
        assert results.indices == expected_order(query)[0]
        assert results.usage["search_units"] == 1
    one = await reranker.arank(QUERY, DOCS)  # on this test's own loop
    assert one.indices == expected_order()[0]
    await reranker.aclose()


def test_max_concurrency_caps_requests_in_flight(fake, remote):
    server = fake("cohere", delay_s=0.5)  # long enough that two overlap on a loaded CI machine
    reranker = remote(server, "cohere", max_concurrency=2, max_documents_per_request=2)
    results = reranker.rank(QUERY, DOCS * 2)  # 10 documents -> 5 sub-requests
    assert len(server.requests) == 5
    assert server.max_in_flight == 2
    assert sorted(results.indices) == list(range(10))


def test_memory_cache_sends_only_unseen_pairs(fake, remote):
    server = fake("cohere")
    reranker = remote(server, "cohere", cache="memory")
    first = reranker.rank(QUERY, DOCS)
    again = reranker.rank(QUERY, DOCS[:3] + ["A brand new passage about Paris."])
    assert len(server.requests) == 2
    assert server.bodies[1]["documents"] == ["A brand new passage about Paris."]  # pointwise: misses only
    by_text = {r.text: r.relevance for r in first}
    assert all(r.relevance == pytest.approx(by_text[r.text]) for r in again if r.text in by_text)


def test_close_then_rank_again(fake, remote):
    server = fake("cohere")
    reranker = remote(server, "cohere")
    assert reranker.rank(QUERY, DOCS).indices == expected_order()[0]
    reranker.close()
    assert reranker.rank(QUERY, DOCS).indices == expected_order()[0]
    with reranker:
        pass
    assert len(server.requests) == 2
