"""The api key goes to the service as a bearer token and nowhere else: not in a log line (any
logger, DEBUG included), a repr, an exception message, a fallback reason, or a serialized config
or result."""

from __future__ import annotations

import json
import logging

import pytest
from conftest import KEY
from support import fake_rerank_apis as faults

from rankbridge.rerankers import BackendError, ConfigError, load_reranker

QUERY = "what is the capital of france"
DOCS = ["Bananas are yellow.", "Paris is the capital of France."]


def assert_no_key(*texts: str) -> None:
    for text in texts:
        assert KEY not in text


@pytest.mark.parametrize("backend", ["cohere", "voyage", "jina", "tei", "vllm-rerank", "infinity"])
def test_key_is_sent_but_never_shown(fake, remote, caplog, backend):
    server = fake(backend)
    reranker = remote(server, backend, max_retries=1)
    with caplog.at_level(logging.DEBUG):  # every logger: rankbridge, httpx, httpcore, asyncio
        ok = reranker.rank(QUERY, DOCS)
        server.fail_next(faults.status(503, "busy"), faults.status(503, "busy"))
        with pytest.raises(BackendError) as failed:
            reranker.rank(QUERY, DOCS)
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"
    assert caplog.records  # something was logged, and none of it holds the key
    assert_no_key(
        caplog.text,
        "\n".join(r.getMessage() for r in caplog.records),
        repr(reranker),
        str(reranker.config),
        repr(reranker.config),
        reranker.config.model_dump_json(),
        json.dumps(reranker.config.model_dump(mode="json")),
        str(reranker.config.model_dump()),
        repr(reranker.client),
        str(failed.value),
        repr(failed.value),
        json.dumps(ok.to_dict()),
    )


def test_key_from_the_environment_is_never_shown(fake, monkeypatch, caplog):
    server = fake("cohere")
    monkeypatch.setenv("COHERE_API_KEY", KEY)
    reranker = load_reranker({"backend": "cohere", "model": "rerank-v3.5", "base_url": server.base_url, "on_error": "fallback"})
    try:
        server.fail_next(faults.unauthorized())
        with caplog.at_level(logging.DEBUG):
            results = reranker.rank(QUERY, DOCS)
    finally:
        reranker.close()
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"
    assert results.fallback_reason and "401" in results.fallback_reason
    assert_no_key(caplog.text, results.fallback_reason, repr(reranker), reranker.config.model_dump_json())


def test_a_service_echoing_the_key_is_redacted(fake, remote):
    server = fake("cohere").fail_next(faults.status(400, f"bad token {KEY} for this model"))
    with pytest.raises(BackendError) as info:
        remote(server, "cohere").rank(QUERY, DOCS)
    assert "bad token *** for this model" in str(info.value)
    assert_no_key(str(info.value))


def test_config_errors_never_show_the_key():
    with pytest.raises(ConfigError) as info:
        load_reranker({"backend": "tei", "api_key": KEY, "timeout": -1})
    assert "timeout" in str(info.value) and "base_url" in str(info.value)
    assert_no_key(str(info.value))
    with pytest.raises(ConfigError) as info:
        load_reranker({"backend": "cohere", "model": "m", "api_key": KEY, "instruction": "x"})
    assert_no_key(str(info.value))
