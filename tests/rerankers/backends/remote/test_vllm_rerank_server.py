"""`vllm-rerank` against a REAL vLLM CPU server (the `.ci/setup_vllm` environment) serving
../shared/models/minilm-l6-ce-weak on loopback: its relevance equals the in-process
`cross-encoder` backend's on the same weights, it ranks identically, and a document past the
model's 512-token context is truncated by the request instead of answering 400.

The server starts once per session (`VLLMServerProcess`, a free port, minutes on a small CPU).
Set RANKBRIDGE_VLLM_RERANK_URL=http://127.0.0.1:PORT to reuse one started with the same flags:
    python -m vllm.entrypoints.openai.api_server --model ../shared/models/minilm-l6-ce-weak \
        --served-model-name minilm --max-model-len 512 --dtype float32
Without the vLLM environment the tests are skipped (in CI, where .ci/setup_vllm runs first, they fail).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rankbridge.llm_rankers.engines.vllm_process import VLLMServerProcess, is_healthy, vllm_python
from rankbridge.rerankers import BackendError, load_reranker
from rankbridge.rerankers.core.errors import BackendError as CoreBackendError

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

SERVED = "minilm"
MODEL = "minilm-l6-ce-weak"
CONTEXT = 512
STARTUP_TIMEOUT_S = float(os.environ.get("RANKBRIDGE_VLLM_STARTUP_TIMEOUT", "600"))

QUERY = "what is the capital of france"
DOCS = [
    "Paris is the capital and largest city of France.",
    "Bananas are yellow fruit that grow in tropical climates.",
    "France is a country in Western Europe; its capital city is Paris.",
    "The mitochondrion is the powerhouse of the cell.",
    "Berlin is the capital of Germany.",
    "Lyon is a large city in France, known for its cuisine.",
    "The Eiffel Tower was completed in 1889 for the World's Fair in Paris.",
    "Capital gains are taxed differently from ordinary income.",
]
QUERIES = {
    QUERY: DOCS,
    "do statins lower ldl cholesterol": [
        "Statin therapy reduced LDL cholesterol by 40% in the trial.",
        "The weather in Lisbon is mild in winter.",
        "High LDL cholesterol is a risk factor for heart disease; statins inhibit HMG-CoA reductase.",
        "Cholesterol is a lipid found in cell membranes.",
    ],
}


def _unavailable(reason: str):
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason} (CI runs .ci/setup_vllm first; it must have failed)", pytrace=False)
    pytest.skip(f"{reason}; run `bash .ci/setup_vllm` to enable the real-vLLM rerank tests")


@pytest.fixture(scope="session")
def vllm_rerank_url(tmp_path_factory, model_dir) -> str:
    running = os.environ.get("RANKBRIDGE_VLLM_RERANK_URL")
    if running:
        if not is_healthy(running.rstrip("/") + "/health"):
            pytest.fail(f"RANKBRIDGE_VLLM_RERANK_URL={running} is set but the server there is not healthy", pytrace=False)
        yield running.rstrip("/")
        return
    python = vllm_python()
    if not python.is_file():
        _unavailable(f"no vLLM environment at {python}")
    log_path = tmp_path_factory.mktemp("vllm-rerank") / "server.log"
    process = VLLMServerProcess(
        Path(model_dir) / MODEL, SERVED, python=python, context_length=CONTEXT, log_path=log_path,
        extra_args=["--max-num-seqs", "128"],
    )
    try:
        process.start(timeout=STARTUP_TIMEOUT_S)
    except CoreBackendError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield process.base_url.removesuffix("/v1")
    finally:
        process.stop()


@pytest.fixture(scope="module")
def cross_encoder():
    reranker = load_reranker({"backend": "cross-encoder", "model": MODEL, "device": "cpu", "dtype": "float32"})
    yield reranker
    reranker.close()


@pytest.fixture
def vllm_rerank(vllm_rerank_url):
    reranker = load_reranker({"backend": "vllm-rerank", "model": SERVED, "base_url": vllm_rerank_url})
    yield reranker
    reranker.close()


def test_relevance_equals_the_in_process_cross_encoder(vllm_rerank, cross_encoder):
    queries = list(QUERIES)
    served = vllm_rerank.rank_many(queries, [QUERIES[q] for q in queries])
    local = cross_encoder.rank_many(queries, [QUERIES[q] for q in queries])
    for remote_results, local_results in zip(served, local):
        assert remote_results.indices == local_results.indices  # ranks identically
        by_index = {r.index: r.relevance for r in local_results}
        for r in remote_results:
            assert abs(r.relevance - by_index[r.index]) <= 1e-3, (r.index, r.relevance, by_index[r.index])
        assert remote_results.usage["prompt_tokens"] > 0 and remote_results.usage["requests"] == 1


def test_split_requests_and_both_routes_give_the_same_answer(vllm_rerank_url, vllm_rerank):
    whole = vllm_rerank.rank(QUERY, DOCS)
    split = load_reranker(
        {"backend": "vllm-rerank", "model": SERVED, "base_url": vllm_rerank_url + "/v2", "max_documents_per_request": 3}
    )
    try:
        parts = split.rank(QUERY, DOCS)
        assert split.client.url.endswith("/v2/rerank")
    finally:
        split.close()
    assert parts.indices == whole.indices
    assert parts.relevances == pytest.approx(whole.relevances, abs=1e-6)
    assert parts.usage["requests"] == 3


async def test_arank_on_the_callers_loop(vllm_rerank):
    results = await vllm_rerank.arank(QUERY, DOCS, top_n=2)
    assert results.indices[0] in (0, 2) and len(results) == 2
    await vllm_rerank.aclose()


def test_a_document_past_the_context_is_truncated_not_rejected(vllm_rerank_url, vllm_rerank, cross_encoder):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(Path(os.environ["RANKBRIDGE_MODEL_DIR"]) / MODEL))
    long_doc = "Paris is the capital of France. " + "The city has many museums, parks and old bridges. " * 80
    assert len(tokenizer(QUERY, long_doc)["input_ids"]) > CONTEXT
    results = vllm_rerank.rank(QUERY, [long_doc, DOCS[1]])
    assert results.indices == [0, 1]
    local = {r.index: r.relevance for r in cross_encoder.rank(QUERY, [long_doc, DOCS[1]])}
    # Both keep the query and the beginning of the document: the same pair, the same number.
    assert abs(results[0].relevance - local[0]) <= 1e-3
    assert results.usage["prompt_tokens"] == CONTEXT + len(tokenizer(QUERY, DOCS[1])["input_ids"])
    per_doc = load_reranker(
        {"backend": "vllm-rerank", "model": SERVED, "base_url": vllm_rerank_url, "truncate": False, "max_tokens_per_doc": 400}
    )
    try:
        assert per_doc.rank(QUERY, [long_doc]).usage["prompt_tokens"] <= 400 + len(tokenizer(QUERY)["input_ids"]) + 1
    finally:
        per_doc.close()
    strict = load_reranker({"backend": "vllm-rerank", "model": SERVED, "base_url": vllm_rerank_url, "truncate": False})
    try:
        with pytest.raises(BackendError, match=r"vLLM rejected the rerank request .*HTTP 400"):
            strict.rank(QUERY, [long_doc])
    finally:
        strict.close()
