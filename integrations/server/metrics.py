"""Prometheus metrics of `rankbridge serve` (the text format at `GET /metrics`).

- `rankbridge_requests_total{route, status}` and `rankbridge_documents_total{route, status}`
- `rankbridge_request_duration_seconds{route}`: latency histogram, whole request
- `rankbridge_batch_requests{model}` and `rankbridge_batch_pairs{model}`: the size of each
  `rank_many` batch, in requests and in (query, document) pairs

Each app has its own registry (several apps in one process never collide). With `--workers N`
the CLI points `PROMETHEUS_MULTIPROC_DIR` at a fresh folder before the workers start, and
`/metrics` then sums every worker's counts (prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import os

from rankbridge.rerankers.core.errors import require

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
PAIR_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
REQUEST_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class ServerMetrics:
    """The server's counters and histograms.

    Example:
        >>> m = ServerMetrics()
        >>> m.observe_request("/v2/rerank", 200, documents=3, seconds=0.01)
        >>> m.observe_batch("lexical", requests=2, pairs=6)
        >>> text = m.render().decode()
        >>> 'rankbridge_requests_total{route="/v2/rerank",status="200"} 1.0' in text
        True
        >>> 'rankbridge_documents_total{route="/v2/rerank",status="200"} 3.0' in text
        True
    """

    def __init__(self) -> None:
        prom = require("prometheus_client", extra="serve", package="prometheus-client")
        self._prom = prom
        self.registry = prom.CollectorRegistry(auto_describe=True)
        self.requests = prom.Counter(
            "rankbridge_requests", "Rerank server requests by route and HTTP status.",
            ["route", "status"], registry=self.registry,
        )
        self.documents = prom.Counter(
            "rankbridge_documents", "Documents in rerank requests by route and HTTP status.",
            ["route", "status"], registry=self.registry,
        )
        self.latency = prom.Histogram(
            "rankbridge_request_duration_seconds", "Rerank request latency, whole request.",
            ["route"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.batch_requests = prom.Histogram(
            "rankbridge_batch_requests", "Requests scored together in one rank_many batch.",
            ["model"], buckets=REQUEST_BUCKETS, registry=self.registry,
        )
        self.batch_pairs = prom.Histogram(
            "rankbridge_batch_pairs", "(query, document) pairs scored in one rank_many batch.",
            ["model"], buckets=PAIR_BUCKETS, registry=self.registry,
        )

    def observe_request(self, route: str, status: int, *, documents: int, seconds: float) -> None:
        labels = {"route": route, "status": str(status)}
        self.requests.labels(**labels).inc()
        if documents:
            self.documents.labels(**labels).inc(documents)
        self.latency.labels(route=route).observe(seconds)

    def observe_batch(self, model: str, *, requests: int, pairs: int) -> None:
        self.batch_requests.labels(model=model).observe(requests)
        self.batch_pairs.labels(model=model).observe(pairs)

    def render(self) -> bytes:
        """The Prometheus text exposition: this process's metrics, or every worker's in
        multiprocess mode."""
        prom = self._prom
        if os.environ.get(MULTIPROC_ENV):
            from prometheus_client import multiprocess

            registry = prom.CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return prom.generate_latest(registry)
        return prom.generate_latest(self.registry)
