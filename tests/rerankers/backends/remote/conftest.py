"""FAKE rerank services (tests/support/fake_rerank_apis.py) for the remote backends' tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from support.fake_rerank_apis import FakeRerankServer, fake_rerank_api

from rankbridge.rerankers import load_reranker

KEY = "sk-test-9f2c41d7e5SECRET"


@pytest.fixture
def fake() -> Iterator[Callable[..., FakeRerankServer]]:
    """`fake(name, **kwargs)` starts the FAKE `name` service (with `KEY` as its api key unless
    `api_key=` says otherwise) and stops it after the test."""
    stack = []

    def start(name: str, *, api_key: str | None = KEY, delay_s: float = 0.0) -> FakeRerankServer:
        ctx = fake_rerank_api(name, api_key=api_key, delay_s=delay_s)
        server = ctx.__enter__()
        stack.append(ctx)
        return server

    yield start
    for ctx in reversed(stack):
        ctx.__exit__(None, None, None)


@pytest.fixture
def remote() -> Iterator[Callable[..., object]]:
    """`remote(server, backend, **fields)`: a reranker of `backend` pointed at a FAKE server
    (closed after the test)."""
    made = []

    def build(server: FakeRerankServer, backend: str, **fields):
        fields.setdefault("api_key", KEY)
        if backend in ("cohere", "voyage", "jina"):
            fields.setdefault("model", {"cohere": "rerank-v3.5", "voyage": "rerank-2.5", "jina": "jina-reranker-v2-base-multilingual"}[backend])
        reranker = load_reranker({"backend": backend, "base_url": server.base_url, **fields})
        made.append(reranker)
        return reranker

    yield build
    for reranker in made:
        reranker.close()
