"""The listwise backend against the REAL vLLM CPU server hosting SmolLM2-135M-Instruct.

A 135M model ranks poorly, so these tests assert the protocol (chat completions, first-token
log-probabilities, usage, errors), parsing, window bookkeeping, invariants and cost accounting,
never ranking quality.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from rankbridge.llm_rankers.engines.openai_http import OpenAIChatClient
from rankbridge.llm_rankers.listwise.reranker import ListwiseReranker
from rankbridge.llm_rankers.listwise.parser import ALPHA_LABELS
from rankbridge.llm_rankers.listwise.tokens import TokenCounter
from rankbridge.rerankers import BackendError, Candidate, load_reranker

pytestmark = [pytest.mark.slow, pytest.mark.vllm]


@pytest.fixture(scope="module")
def scifact_query(scifact_dir):
    """One SciFact query and 20 real passages: its relevant documents among others."""
    from rankbridge.integrations.evaluation.beir import load_beir

    data = load_beir(scifact_dir)
    qid = sorted(data.qrels, key=int)[0]
    relevant = list(data.qrels[qid])
    others = [d for d in list(data.corpus)[:200] if d not in relevant]
    doc_ids = relevant + random.Random(0).sample(others, 20 - len(relevant))
    random.Random(1).shuffle(doc_ids)
    texts = [f"{data.corpus[d]['title']}. {data.corpus[d]['text']}" for d in doc_ids]
    return data.queries[qid], doc_ids, texts


def listwise(server, **fields) -> ListwiseReranker:
    spec = {
        "backend": "listwise",
        "base_url": server.base_url,
        "model": server.model,
        "tokenizer": str(server.model_dir),
        "max_passage_tokens": 48,
        "timeout": 120,
        **fields,
    }
    return load_reranker(spec)


def assert_rank_derived(results, n):
    assert sorted(results.indices) == list(range(n))
    assert results.scores == [float(n - p) for p in range(n)]
    assert results.relevances == pytest.approx([1 - p / n for p in range(n)])


def test_the_server_speaks_the_protocol_the_rankers_rely_on(vllm_server):
    client = OpenAIChatClient(vllm_server.base_url, vllm_server.model, timeout=120)

    async def go():
        served = await client.models()
        result = await client.chat(
            [{"role": "user", "content": "Answer with one capital letter: A, B or C?"}],
            max_tokens=1,
            logprobs=True,
            top_logprobs=5,
        )
        await client.aclose()
        return served, result

    served, result = asyncio.run(go())
    assert vllm_server.model in served
    assert result.completion_tokens == 1 and result.prompt_tokens > 10
    assert len(result.first_token_logprobs) == 5
    logprobs = [t.logprob for t in result.first_token_logprobs]
    assert logprobs == sorted(logprobs, reverse=True) and all(lp <= 0 for lp in logprobs)
    assert result.text == result.first_token_logprobs[0].token  # greedy: the most likely token


def test_identifier_labels_are_single_tokens_for_the_served_tokenizer(vllm_server):
    counter = TokenCounter.for_model(str(vllm_server.model_dir))
    assert counter.exact
    assert all(counter.count(label) == 1 for label in ALPHA_LABELS)
    assert counter.count("12") == 2  # SmolLM2 splits digits: numbers above 9 cannot be one-token labels


def test_generate_mode_end_to_end(vllm_server, scifact_query):
    query, _, texts = scifact_query
    texts = texts[:12]
    reranker = listwise(vllm_server, window_size=6, step=3, max_output_tokens=40)
    results = reranker.rank(query, texts)
    assert_rank_derived(results, 12)
    assert results.fallback_reason is None
    stats = reranker.last_stats
    assert stats.calls == reranker.estimate_calls(12) == 3
    client = reranker.client
    assert (client.stats.calls, client.stats.prompt_tokens, client.stats.completion_tokens) == (
        stats.calls, stats.prompt_tokens, stats.completion_tokens,
    )
    assert 0 < stats.completion_tokens <= 3 * 40
    assert stats.unusable_windows + stats.repaired_windows <= stats.calls
    reranker.close()


def test_first_token_mode_reads_one_token_per_window(vllm_server, scifact_query):
    query, _, texts = scifact_query
    reranker = listwise(vllm_server, mode="first_token", window_size=10, step=5)
    results = reranker.rank(query, [Candidate(text=t, id=f"d{i}") for i, t in enumerate(texts)])
    assert_rank_derived(results, 20)
    assert sorted(results.ids) == sorted(f"d{i}" for i in range(20))
    stats = reranker.last_stats
    assert stats.calls == reranker.estimate_calls(20) == 3
    assert stats.completion_tokens == stats.calls  # one generated token per window
    assert stats.unusable_windows == 0  # the model's first token after "[" is a label
    reranker.close()


def test_prompts_fit_the_context_counted_with_the_served_tokenizer(vllm_server):
    long_passages = [f"Passage {i}. " + "The cell membrane regulates transport of ions. " * 200 for i in range(8)]
    reranker = listwise(
        vllm_server, mode="first_token", window_size=8, step=8, context_length=1024, max_passage_tokens=4000
    )
    reranker.rank("ion transport", long_passages)
    stats = reranker.last_stats
    assert stats.calls == 1
    assert 900 < stats.prompt_tokens <= 1024 - 1  # the passages were cut to fill, not exceed, the context


def test_local_token_count_equals_the_servers(vllm_server):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(vllm_server.model_dir))
    reranker = listwise(vllm_server, window_size=3, step=3, max_output_tokens=1)
    messages = reranker.prompt.messages("What is RNA?", ["RNA is a nucleic acid.", "Bananas.", "Ribosomes read RNA."])
    local = len(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"])
    result = asyncio.run(reranker.client.chat(messages, max_tokens=1))
    assert result.prompt_tokens == local


def test_a_prompt_longer_than_the_server_context_is_rejected_without_retries(vllm_server):
    reranker = listwise(
        vllm_server, window_size=4, step=4, context_length=16384, max_passage_tokens=2000, max_output_tokens=1
    )
    with pytest.raises(BackendError, match="HTTP 400"):
        reranker.rank("q", ["word " * 2000] * 4)
    assert reranker.client.stats.retries == 0


def test_concurrent_queries_and_windows_keep_every_invariant(vllm_server, scifact_query):
    query, _, texts = scifact_query
    texts = texts[:12]
    sequential = listwise(vllm_server, mode="first_token", window_size=6, step=6, concurrent_windows=False)
    concurrent = listwise(vllm_server, mode="first_token", window_size=6, step=6, concurrent_windows=True)

    async def both():
        return await asyncio.gather(sequential.arank(query, texts), concurrent.arank(query, texts))

    seq, con = asyncio.run(both())
    assert_rank_derived(seq, 12)
    assert_rank_derived(con, 12)
    assert sequential.last_stats.calls == concurrent.last_stats.calls == sequential.estimate_calls(12) == 2
    many = concurrent.rank_many([query, "vitamin D"], [texts[:6], texts[6:]])
    for results in many:
        assert_rank_derived(results, 6)
    sequential.close()
    concurrent.close()


def test_llama_index_postprocessor_with_the_listwise_backend(vllm_server, scifact_query):
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

    from rankbridge.integrations.llama_index import RankbridgeRerank

    query, doc_ids, texts = scifact_query
    spec = {"backend": "listwise", "base_url": vllm_server.base_url, "model": vllm_server.model,
            "tokenizer": str(vllm_server.model_dir), "mode": "first_token", "window_size": 6, "step": 6,
            "max_passage_tokens": 48}
    nodes = [NodeWithScore(node=TextNode(text=t, id_=d), score=1.0 - i / 10) for i, (d, t) in enumerate(zip(doc_ids[:6], texts[:6]))]
    out = RankbridgeRerank(reranker=spec, top_n=3).postprocess_nodes(nodes, QueryBundle(query))
    assert len(out) == 3
    assert {n.node.node_id for n in out} <= set(doc_ids[:6])
    assert [n.score for n in out] == pytest.approx([1.0, 5 / 6, 4 / 6])  # rank-derived relevance


def test_langchain_compressor_with_the_listwise_backend(vllm_server, scifact_query):
    from langchain_core.documents import Document

    from rankbridge.integrations.langchain import RankbridgeCompressor

    query, doc_ids, texts = scifact_query
    spec = {"backend": "listwise", "base_url": vllm_server.base_url, "model": vllm_server.model,
            "tokenizer": str(vllm_server.model_dir), "mode": "first_token", "window_size": 5, "step": 5,
            "max_passage_tokens": 48}
    docs = [Document(page_content=t, metadata={"doc_id": d}) for d, t in zip(doc_ids[:5], texts[:5])]
    out = RankbridgeCompressor(reranker=spec, top_n=5).compress_documents(docs, query)
    assert sorted(d.metadata["doc_id"] for d in out) == sorted(doc_ids[:5])
    assert [d.metadata["relevance_score"] for d in out] == pytest.approx([1.0, 0.8, 0.6, 0.4, 0.2])
