"""Cross-request dynamic batching: concurrent requests each get exactly their own results,
batching on and off answer identically, a busy model never blocks the event loop, batches
respect `max_batch_pairs`, and a failing request does not fail its batch-mates."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest
import serve_fakes
from serve_support import DOCS, QUERY, settings

from rankbridge.integrations.server import BackgroundServer
from rankbridge.integrations.server.batcher import DynamicBatcher
from rankbridge.rerankers import BackendError, Candidate, load_reranker

WORDS = ["apple", "river", "stone", "cloud", "maple", "falcon", "copper", "violet", "harbor", "ember", "glacier", "orchid"]


def request_set(n: int = 64) -> list[tuple[str, list[str]]]:
    """n requests, each with its own query and its own candidates (1 to 12 of them)."""
    out = []
    for i in range(n):
        k = 1 + i % 12
        words = [WORDS[(i + j) % len(WORDS)] for j in range(k)]
        docs = [f"doc {i}-{j}: " + " ".join(words[: j + 1]) + f" token{i}x{j}" for j in range(k)]
        query = f"{words[-1]} {words[k // 2]} token{i}x{k // 2}"
        out.append((query, docs))
    return out


async def post_all(url: str, requests: list[tuple[str, list[str]]]) -> list[dict]:
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=httpx.Limits(max_connections=64)) as client:
        responses = await asyncio.gather(
            *(client.post("/v2/rerank", json={"model": "lexical", "query": q, "documents": d}) for q, d in requests)
        )
    assert [r.status_code for r in responses] == [200] * len(requests)
    return [r.json() for r in responses]


async def test_64_concurrent_requests_each_get_their_own_results():
    requests = request_set(64)
    reranker = load_reranker("lexical")
    with BackgroundServer(settings("lexical", max_wait_ms=20)) as server:
        bodies = await post_all(server.url, requests)
        stats = server.state.models["lexical"].batcher.stats
    for (query, docs), body in zip(requests, bodies):
        want = reranker.rank(query, docs)
        assert [r["index"] for r in body["results"]] == want.indices
        assert [r["relevance_score"] for r in body["results"]] == pytest.approx(want.relevances, abs=1e-12)
    assert stats.requests == 64 and stats.pairs == sum(len(d) for _, d in requests)
    assert stats.batches < 64  # requests shared batches


async def test_batching_on_and_off_give_identical_results():
    requests = request_set(32)
    with BackgroundServer(settings("lexical", max_wait_ms=20)) as on:
        with_batching = await post_all(on.url, requests)
    with BackgroundServer(settings("lexical", batching=False)) as off:
        without = await post_all(off.url, requests)
        assert set(off.state.models["lexical"].batcher.stats.sizes) == {1}
    strip = lambda bodies: [b["results"] for b in bodies]  # noqa: E731  (ids differ by design)
    assert strip(with_batching) == strip(without)


async def test_requests_queue_while_the_model_is_busy_and_the_loop_stays_free():
    serve_fakes.BATCHES.clear()
    serve_fakes.ENTERED.clear()
    serve_fakes.GATE.clear()
    try:
        with BackgroundServer(settings("gate=serve-test-gate", max_wait_ms=0)) as server:
            async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
                body = lambda q: {"model": "gate", "query": q, "documents": DOCS}  # noqa: E731
                first = asyncio.create_task(client.post("/v2/rerank", json=body(QUERY)))
                while not serve_fakes.ENTERED.is_set():
                    await asyncio.sleep(0.01)
                queries = ["eiffel tower", "bananas", "bone density", "calcium", "vitamin"]
                rest = [asyncio.create_task(client.post("/v2/rerank", json=body(q))) for q in queries]
                batcher = server.state.models["gate"].batcher
                while batcher.queued < len(queries):
                    await asyncio.sleep(0.01)
                # inference is blocked in the worker thread; the event loop still answers
                assert (await client.get("/health")).status_code == 200
                assert (await client.get("/metrics")).status_code == 200
                serve_fakes.GATE.set()
                answers = [await first] + [await t for t in rest]
    finally:
        serve_fakes.GATE.set()
    assert serve_fakes.BATCHES == [1, len(queries)]  # the five queued requests: one rank_many call
    reranker = load_reranker("lexical")
    for q, r in zip([QUERY, *queries], answers):
        assert [x["index"] for x in r.json()["results"]] == reranker.rank(q, DOCS).indices


async def test_batches_respect_max_batch_pairs_and_skip_cancelled_requests():
    serve_fakes.BATCHES.clear()
    serve_fakes.ENTERED.clear()
    serve_fakes.GATE.clear()
    reranker = load_reranker("serve-test-gate")
    seen: list[tuple[int, int]] = []
    try:
        async with DynamicBatcher(reranker, max_batch_pairs=10, max_wait_ms=0,
                                  observe=lambda r, p: seen.append((r, p))) as batcher:
            cands = lambda n: [Candidate(text=d) for d in (DOCS * 3)[:n]]  # noqa: E731
            first = asyncio.create_task(batcher.submit(QUERY, cands(2)))
            while not serve_fakes.ENTERED.is_set():
                await asyncio.sleep(0.01)
            sizes = [4, 4, 4, 12, 3]
            tasks = [asyncio.create_task(batcher.submit(f"{QUERY} {i}", cands(n))) for i, n in enumerate(sizes)]
            cancelled = asyncio.create_task(batcher.submit("cancelled", cands(5)))
            while batcher.queued < len(sizes) + 1:
                await asyncio.sleep(0.01)
            cancelled.cancel()
            serve_fakes.GATE.set()
            results = [await first] + [await t for t in tasks]
    finally:
        serve_fakes.GATE.set()
    assert [len(r) for r in results] == [2, *sizes]
    # 2 | 4+4 | 4 (12 would overflow) | 12 alone (over the bound) | 3
    assert seen == [(1, 2), (2, 8), (1, 4), (1, 12), (1, 3)]
    assert with_queries(results) == [QUERY] + [f"{QUERY} {i}" for i in range(len(sizes))]


def with_queries(results):
    return [r.query for r in results]


async def test_a_failing_request_does_not_fail_its_batch_mates():
    reranker = load_reranker("serve-test-explode")
    async with DynamicBatcher(reranker, max_wait_ms=200) as batcher:
        queries = ["vitamin d", "EXPLODE now", "eiffel tower", "bananas"]
        outcomes = await asyncio.gather(
            *(batcher.submit(q, [Candidate(text=d) for d in DOCS]) for q in queries), return_exceptions=True
        )
    assert batcher.stats.batches == 1 and batcher.stats.rescored_alone == 4
    assert isinstance(outcomes[1], BackendError) and "model crashed" in str(outcomes[1])
    lexical = load_reranker("lexical")
    for i in (0, 2, 3):
        assert outcomes[i].indices == lexical.rank(queries[i], DOCS).indices


def test_backend_failure_is_5xx_or_fallback_order():
    from rankbridge.integrations.server.runner import free_port

    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there: a real connection failure
    tei = {"backend": "tei", "base_url": dead, "max_retries": 0, "timeout": 5}
    import json

    specs = [f"down={json.dumps(tei)}", f"safe={json.dumps({**tei, 'on_error': 'fallback'})}"]
    with BackgroundServer(settings(*specs)) as server:
        r = httpx.post(server.url + "/v2/rerank", json={"model": "down", "query": QUERY, "documents": DOCS}, timeout=60)
        assert r.status_code == 500
        assert set(r.json()) == {"id", "message"} and "the reranker failed" in r.json()["message"]
        r = httpx.post(server.url + "/rerank", json={"query": QUERY, "texts": DOCS}, timeout=60)
        assert r.status_code == 500 and r.json()["error_type"] == "Backend"
        r = httpx.post(server.url + "/v2/rerank", json={"model": "safe", "query": QUERY, "documents": DOCS, "top_n": 3}, timeout=60)
        assert r.status_code == 200
        body = r.json()
        assert [x["index"] for x in body["results"]] == [0, 1, 2]  # the input order
        assert "input order" in body["meta"]["warnings"][0]
        assert r.headers["x-rankbridge-fallback"]
        assert httpx.get(server.url + "/health").status_code == 200


def test_a_model_that_fails_to_load_is_reported_not_fatal():
    bad = '{"backend": "cross-encoder", "model": "/nonexistent/model-dir"}'
    server = BackgroundServer(settings("lexical", f"broken={bad}"), wait_ready=False).start()
    try:
        while not server.state.models["broken"].error and server.state.models["broken"].batcher is None:
            threading.Event().wait(0.05)
        ready = httpx.get(server.url + "/ready")
        assert ready.status_code == 503 and ready.json()["models"]["broken"] == "failed"
        r = httpx.post(server.url + "/v2/rerank", json={"model": "broken", "query": QUERY, "documents": DOCS})
        assert r.status_code == 503 and "failed to load" in r.json()["message"]
        while server.state.models["lexical"].batcher is None:
            threading.Event().wait(0.05)
        r = httpx.post(server.url + "/v2/rerank", json={"model": "lexical", "query": QUERY, "documents": DOCS})
        assert r.status_code == 200
    finally:
        server.stop()


async def test_a_client_that_hangs_up_is_not_scored():
    import json
    import socket

    serve_fakes.BATCHES.clear()
    serve_fakes.ENTERED.clear()
    serve_fakes.GATE.clear()
    try:
        with BackgroundServer(settings("gate=serve-test-gate", max_wait_ms=0)) as server:
            async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
                first = asyncio.create_task(
                    client.post("/v2/rerank", json={"model": "gate", "query": QUERY, "documents": DOCS})
                )
                while not serve_fakes.ENTERED.is_set():
                    await asyncio.sleep(0.01)
                body = json.dumps({"model": "gate", "query": "hang up", "documents": DOCS}).encode()
                sock = socket.create_connection((server.host, server.port))
                sock.sendall(b"POST /v2/rerank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
                batcher = server.state.models["gate"].batcher
                while batcher.queued < 1:
                    await asyncio.sleep(0.01)
                sock.close()
                counted = 'rankbridge_requests_total{route="/v2/rerank",status="499"} 1.0'
                while counted not in (await client.get("/metrics")).text:
                    await asyncio.sleep(0.01)
                serve_fakes.GATE.set()
                assert (await first).status_code == 200
    finally:
        serve_fakes.GATE.set()
    assert serve_fakes.BATCHES == [1]  # the hung-up request never reached the model
