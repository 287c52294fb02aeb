"""A real model behind the server: the weak MiniLM cross-encoder on ONNX Runtime, 50 SciFact
candidates per request. Served relevance equals in-process relevance (the Cohere SDK, the TEI
client backend splitting at 32 texts), and batched concurrent requests equal one-by-one ones."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from serve_support import settings

from rankbridge.integrations.server import BackgroundServer
from rankbridge.rerankers import load_reranker

pytestmark = pytest.mark.slow

SPEC = {"backend": "cross-encoder", "model": "minilm-l6-ce-weak", "runtime": "onnx"}


@pytest.fixture(scope="module")
def scifact(scifact_dir):
    docs, queries = [], []
    with open(scifact_dir / "corpus.jsonl") as f:
        for line, _ in zip(f, range(50)):
            row = json.loads(line)
            docs.append(f"{row['title']}. {row['text']}"[:600])
    with open(scifact_dir / "queries.jsonl") as f:
        for line, _ in zip(f, range(4)):
            queries.append(json.loads(line)["text"])
    return queries, docs


@pytest.fixture(scope="module")
def ce_server(model_dir):
    reranker = load_reranker(SPEC)
    # a 200 ms window: concurrent requests arriving spread out on a loaded machine still share batches
    with BackgroundServer(settings(f"ce={json.dumps(SPEC)}", max_wait_ms=200), rerankers={"ce": reranker}) as srv:
        yield srv, reranker


def test_cross_encoder_served_equals_in_process(ce_server, scifact):
    cohere = pytest.importorskip("cohere")
    server, reranker = ce_server
    queries, docs = scifact
    want = reranker.rank(queries[0], docs)
    got = cohere.ClientV2(api_key="unused", base_url=server.url).rerank(model="ce", query=queries[0], documents=docs, top_n=10)
    assert [r.index for r in got.results] == want.indices[:10]
    assert [r.relevance_score for r in got.results] == pytest.approx(want.relevances[:10], abs=1e-5)
    with load_reranker({"backend": "tei", "base_url": server.url}) as tei:  # 50 texts: two sub-requests of <= 32
        via_tei = tei.rank(queries[0], docs)
    assert via_tei.indices[:10] == want.indices[:10]
    assert via_tei.relevances == pytest.approx(want.relevances, abs=1e-5)


async def test_cross_encoder_concurrent_batched_requests(ce_server, scifact):
    server, reranker = ce_server
    queries, docs = scifact
    queries, docs = queries[:4], docs[:20]  # small: the CI machine has 2 cores
    before = server.state.models["ce"].batcher.stats.batches
    async with httpx.AsyncClient(base_url=server.url, timeout=300) as client:
        responses = await asyncio.gather(
            *(client.post("/rerank", json={"query": q, "texts": docs[i:] + docs[:i]}) for i, q in enumerate(queries))
        )
    assert server.state.models["ce"].batcher.stats.batches - before < len(queries)
    for i, (q, r) in enumerate(zip(queries, responses)):
        assert r.status_code == 200
        want = reranker.rank(q, docs[i:] + docs[:i])
        assert [x["index"] for x in r.json()][:10] == want.indices[:10]
        assert [x["score"] for x in r.json()] == pytest.approx(want.relevances, abs=1e-5)
