"""The failure modes of a rerank service, each against a strict FAKE: retried where the issue
says (408/409/429/5xx, connection errors, timeouts; honouring Retry-After), never for other 4xx,
and otherwise a clear BackendError naming the API — or, with `on_error: fallback`, the
first-stage order with the reason. Nothing is lost or misplaced either way."""

from __future__ import annotations

import logging
import socket

import pytest
from support import fake_rerank_apis as faults
from support.fake_rerank_apis import fake_relevance

from rankbridge.rerankers import BackendError, load_reranker
from rankbridge.rerankers.core.types import Candidate

QUERY = "what is the capital of france"
DOCS = ["Bananas are yellow.", "Paris is the capital of France.", "France is in Europe.", "Berlin is in Germany."]
FIRST_STAGE = [Candidate(text=t, score=s) for t, s in zip(DOCS, [0.4, 0.1, 0.3, 0.2])]


def expected():
    scores = [fake_relevance(QUERY, d) for d in DOCS]
    return sorted(range(len(DOCS)), key=lambda i: (-scores[i], i))


@pytest.mark.parametrize(
    "fault, header",
    [
        (faults.status(429, retry_after="1"), "in 1.00s"),
        (faults.status(429, retry_after_ms="250", retry_after="30"), "in 0.25s"),
        (faults.status(503, "upstream busy"), None),
        (faults.status(408, "request timeout"), None),
        (faults.status(409, "conflict"), None),
        (faults.html_page(502), None),
        (faults.cut_connection(), None),
    ],
    ids=["429-retry-after", "429-retry-after-ms", "503", "408", "409", "html-502", "cut-connection"],
)
def test_retryable_failures_are_retried_then_succeed(fake, remote, caplog, fault, header):
    server = fake("cohere").fail_next(fault)
    with caplog.at_level(logging.INFO, logger="rankbridge"):
        results = remote(server, "cohere", max_retries=2).rank(QUERY, DOCS)
    assert results.indices == expected()
    assert results.fallback_reason is None
    assert len(server.requests) == 2
    retry_lines = [r.getMessage() for r in caplog.records if "retry 1/2" in r.getMessage()]
    assert len(retry_lines) == 1
    if header:
        assert header in retry_lines[0]  # the wait the service asked for


def test_retries_exhausted_is_an_error_with_status_and_the_services_message(fake, remote):
    server = fake("cohere").fail_next(*[faults.status(503, "upstream busy")] * 3)
    with pytest.raises(BackendError) as info:
        remote(server, "cohere", max_retries=1).rank(QUERY, DOCS)
    message = str(info.value)
    assert "Cohere" in message and "after 2 attempt(s)" in message and "HTTP 503: upstream busy" in message
    assert len(server.requests) == 2


def test_html_502_page_is_named_as_such(fake, remote):
    server = fake("cohere").fail_next(faults.html_page(502), faults.html_page(502))
    with pytest.raises(BackendError, match=r"HTTP 502 with an HTML page \(502 Bad Gateway\) instead of a JSON body"):
        remote(server, "cohere", max_retries=1).rank(QUERY, DOCS)


def test_hang_past_timeout(fake, remote):
    server = fake("cohere").fail_next(faults.hang(5), faults.hang(5))
    reranker = remote(server, "cohere", timeout=0.3, max_retries=1)
    with pytest.raises(BackendError, match=r"Cohere .* failed after 2 attempt\(s\): no complete answer within timeout=0.3s"):
        reranker.rank(QUERY, DOCS)


def test_hang_then_answer_within_retries(fake, remote):
    # The retry's answer must arrive within the timeout: leave a loaded CI machine ample room
    # (a 0.3 s timeout could fire on the good answer too), while the hang still outlasts it.
    server = fake("cohere").fail_next(faults.hang(5))
    results = remote(server, "cohere", timeout=1.5, max_retries=1).rank(QUERY, DOCS)
    assert results.indices == expected()


def test_connection_refused(remote):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    reranker = load_reranker({"backend": "tei", "base_url": f"http://127.0.0.1:{port}", "max_retries": 1})
    try:
        with pytest.raises(BackendError, match=r"TEI .* failed after 2 attempt\(s\): connection error \(ConnectError"):
            reranker.rank(QUERY, DOCS)
    finally:
        reranker.close()


def test_truncated_json_body(fake, remote):
    server = fake("cohere").fail_next(faults.truncated_json())
    with pytest.raises(BackendError, match=r"Cohere answered HTTP 200 with a body that is not valid JSON \(truncated\?\)"):
        remote(server, "cohere").rank(QUERY, DOCS)


@pytest.mark.parametrize(
    "backend, fault, needle",
    [
        ("cohere", faults.drop_result(), r"Cohere returned 3 results for 4 documents \(missing: \d\)"),
        ("cohere", faults.duplicate_index(), r"Cohere returned index \d more than once"),
        ("cohere", faults.index_out_of_range(), r"Cohere returned index 9, out of range for 4 documents"),
        ("cohere", faults.nan_score(), r"Cohere returned a non-finite score \(nan\) for document \d"),
        ("voyage", faults.drop_result(), r"Voyage returned 3 results for 4 documents"),
        ("jina", faults.duplicate_index(), r"Jina returned index \d more than once"),
        ("tei", faults.nan_score(), r"TEI returned a non-finite score \(nan\)"),
        ("vllm-rerank", faults.index_out_of_range(), r"vLLM returned index 9, out of range"),
        ("infinity", faults.drop_result(), r"Infinity returned 3 results for 4 documents"),
    ],
)
def test_bad_answers_are_errors_naming_the_api(fake, remote, backend, fault, needle):
    server = fake(backend).fail_next(fault)
    with pytest.raises(BackendError, match=needle):
        remote(server, backend).rank(QUERY, DOCS)
    assert len(server.requests) == 1  # a wrong answer is not retried


@pytest.mark.parametrize(
    "backend, needle",
    [
        ("cohere", "HTTP 401: invalid api token"),
        ("voyage", "HTTP 401: Provided API key is invalid."),
        ("jina", "HTTP 401: invalid api token"),
        ("tei", "HTTP 401: invalid api token (Unauthorized)"),
        ("vllm-rerank", "HTTP 401: invalid api token"),
        ("infinity", "HTTP 401: invalid api token"),
    ],
)
def test_401_is_not_retried_and_carries_the_services_message(fake, remote, backend, needle):
    server = fake(backend)
    reranker = remote(server, backend, api_key="wrong-key", max_retries=3)
    with pytest.raises(BackendError) as info:
        reranker.rank(QUERY, DOCS)
    assert needle in str(info.value) and "check the api key" in str(info.value)
    assert "wrong-key" not in str(info.value)
    assert len(server.requests) == 1


def test_other_4xx_are_not_retried(fake, remote):
    server = fake("cohere").fail_next(faults.status(400, "invalid request: query must not be empty"))
    with pytest.raises(BackendError, match="HTTP 400: invalid request: query must not be empty"):
        remote(server, "cohere", max_retries=3).rank(QUERY, DOCS)
    assert len(server.requests) == 1


FALLBACK_FAULTS = {
    "429-exhausted": [faults.status(429, retry_after="0")] * 2,
    "hang": [faults.hang(5)] * 2,
    "truncated-json": [faults.truncated_json()],
    "html-502": [faults.html_page(502)] * 2,
    "too-few": [faults.drop_result()],
    "duplicate": [faults.duplicate_index()],
    "out-of-range": [faults.index_out_of_range()],
    "nan": [faults.nan_score()],
    "401": [faults.unauthorized()],
}


@pytest.mark.parametrize("name", sorted(FALLBACK_FAULTS))
def test_fallback_keeps_the_first_stage_order_and_says_why(fake, remote, name, caplog):
    server = fake("cohere").fail_next(*FALLBACK_FAULTS[name])
    # A short timeout only where the fault is a hang: elsewhere it could fire on a slow CI machine,
    # and the retry (no fault left) would then succeed instead of falling back.
    timeout = 0.3 if name == "hang" else 30.0
    reranker = remote(server, "cohere", on_error="fallback", timeout=timeout, max_retries=1)
    with caplog.at_level(logging.WARNING):
        results = reranker.rank(QUERY, FIRST_STAGE)
    assert results.indices == [0, 2, 3, 1]  # by Candidate.score: nothing lost, nothing misplaced
    assert results.fallback_reason and "Cohere" in results.fallback_reason
    assert results.usage is None
    assert any("on_error=fallback" in r.getMessage() for r in caplog.records)


def test_connection_refused_fallback(remote):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    reranker = load_reranker(
        {"backend": "vllm-rerank", "base_url": f"http://127.0.0.1:{port}", "max_retries": 0, "on_error": "fallback"}
    )
    try:
        results = reranker.rank(QUERY, FIRST_STAGE)
    finally:
        reranker.close()
    assert results.indices == [0, 2, 3, 1]
    assert "connection error" in results.fallback_reason


def test_one_failing_sub_request_fails_the_list_not_silently_part_of_it(fake, remote):
    server = fake("cohere").fail_next(lambda api, reply: reply, faults.drop_result())  # 2nd sub-request is short
    reranker = remote(server, "cohere", max_documents_per_request=2, max_concurrency=1, on_error="fallback")
    results = reranker.rank(QUERY, FIRST_STAGE)
    assert results.indices == [0, 2, 3, 1]
    assert "returned 1 results for 2 documents" in results.fallback_reason


def test_each_apis_error_body_gives_the_services_own_message():
    # vLLM answers {"error": {...}} today and {"object": "error", "message": ...} in older releases.
    from rankbridge.rerankers.runtime import rerank_apis as apis
    from rankbridge.rerankers.runtime.rerank_http import DIALECTS

    vllm = DIALECTS["vllm-rerank"]
    assert vllm.error_message(apis.vllm_error("max_model_len exceeded")) == "max_model_len exceeded"
    legacy = {"object": "error", "message": "The model `x` does not exist.", "type": "NotFoundError", "param": None, "code": 404}
    assert apis.VLLMLegacyErrorBody.model_validate(legacy).message == legacy["message"]
    assert vllm.error_message(legacy) == "The model `x` does not exist."
    assert DIALECTS["cohere"].error_message(apis.cohere_error("invalid api token")) == "invalid api token"
    assert DIALECTS["tei"].error_message(apis.tei_error("batch size 40 > maximum allowed batch size 32", "Validation")) == (
        "batch size 40 > maximum allowed batch size 32 (Validation)"
    )
    assert DIALECTS["voyage"].error_message({"detail": "Invalid model."}) == "Invalid model."


def test_retry_after_as_an_http_date_is_honoured():
    import email.utils
    import time

    from rankbridge.rerankers.runtime.http_retry import retry_after_seconds

    soon = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= retry_after_seconds({"retry-after": soon}) <= 30
    past = email.utils.formatdate(time.time() - 30, usegmt=True)
    assert retry_after_seconds({"retry-after": past}) == 0.0
    assert retry_after_seconds({"retry-after": "not a date"}) is None
