"""TEST DOUBLE of an HTTP reranking service, for the adapters' async tests.

`rerank_service()` starts a real HTTP server on loopback (asyncio streams, its own thread and
event loop) that answers ``POST /rerank {"query", "documents"}`` with ``{"scores": [...]}``
after a fixed delay, like a remote reranker under load. `HTTPRerankServiceReranker` is a
`Reranker` whose `_ascore` makes a real async HTTP request to it with httpx (and whose
`_score` a blocking one), counting which path ran. The project's real async backend (the
listwise vLLM client) needs a vLLM server; this double gives the adapters an async backend
whose latency is I/O, so concurrency is observable without one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator
from typing import Literal

from pydantic import Field

from rankbridge.rerankers import Reranker, RerankerConfig
from rankbridge.rerankers.core.base import Scores


def overlap_scores(query: str, documents: list[str]) -> list[float]:
    """The service's scoring rule: how many query words each document contains."""
    words = set(query.lower().split())
    return [float(sum(w in words for w in doc.lower().split())) for doc in documents]


class _Server:
    def __init__(self, delay_s: float):
        self.delay_s = delay_s
        self.requests = 0
        self.loop = asyncio.new_event_loop()
        self.started = threading.Event()
        self.thread = threading.Thread(target=self._run, name="http-rerank-double", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]
        self.started.set()
        self.loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:  # keep-alive: several requests per connection
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.decode("latin-1").split("\r\n")[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                body = json.loads(await reader.readexactly(length)) if length else {}
                self.requests += 1
                await asyncio.sleep(self.delay_s)
                payload = json.dumps({"scores": overlap_scores(body["query"], body["documents"])}).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(payload)}\r\n\r\n".encode()
                    + payload
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client closed its connection, or the service is shutting down
        finally:
            writer.close()

    def start(self) -> _Server:
        self.thread.start()
        self.started.wait(10)
        return self

    def stop(self) -> None:
        async def shutdown() -> None:
            self.server.close()
            handlers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in handlers:  # connections a client kept alive
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/rerank"


@contextlib.contextmanager
def rerank_service(delay_s: float = 0.2) -> Iterator[_Server]:
    """Run the loopback reranking service for the duration of the block."""
    server = _Server(delay_s).start()
    try:
        yield server
    finally:
        server.stop()


class HTTPRerankServiceConfig(RerankerConfig):
    backend: Literal["http-rerank-test-double"] = "http-rerank-test-double"
    url: str = Field(description="The loopback service's /rerank URL.")


class HTTPRerankServiceReranker(Reranker):
    """TEST DOUBLE: a client of the loopback reranking service above."""

    name = "http-rerank-test-double"
    config_class = HTTPRerankServiceConfig

    def __init__(self, config=None, **kwargs):
        super().__init__(config, **kwargs)
        self.sync_calls = 0
        self.async_calls = 0
        self._client = None
        self._client_loop = None

    def _payload(self, query, candidates) -> dict:
        return {"query": query, "documents": [c.text for c in candidates]}

    @staticmethod
    def _scores(response) -> Scores:
        response.raise_for_status()
        raw = response.json()["scores"]
        return Scores(raw, [s / (s + 1.0) for s in raw])

    def _score_batch(self, queries, candidate_lists) -> list[Scores]:
        import httpx

        out = []
        for query, candidates in zip(queries, candidate_lists):
            self.sync_calls += 1
            out.append(self._scores(httpx.post(self.config.url, json=self._payload(query, candidates), timeout=30)))
        return out

    async def _ascore_batch(self, queries, candidate_lists) -> list[Scores]:
        out = []
        for query, candidates in zip(queries, candidate_lists):
            self.async_calls += 1
            response = await self._async_client().post(self.config.url, json=self._payload(query, candidates))
            out.append(self._scores(response))
        return out

    def _async_client(self):
        # One pooled client per event loop, as a real HTTP backend keeps one (building a
        # client loads a TLS context: far too slow to do per request).
        import httpx

        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            self._client = httpx.AsyncClient(timeout=30)
            self._client_loop = loop
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
