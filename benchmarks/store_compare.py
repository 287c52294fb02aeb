"""Embedded Qdrant stores compared: qdrant-client local mode vs qdrant-edge-py, hybrid query latency.

The measurement behind `HybridRetriever`'s default embedded store. Synthetic points: a 384-d
unit dense vector and a BM25-like sparse vector (Zipf-distributed term ids, ~60 per document,
queries ~8 terms) in one collection with Qdrant's IDF modifier. The query is the one
`HybridRetriever.search` runs: prefetch dense top-100 and sparse top-100, fused by RRF (k=2),
limit 100, payload returned. Both stores run in this one process, query by query interleaved,
so load from other processes affects both alike.

    python benchmarks/store_compare.py --sizes 5000 --queries 100 --json store_compare_5k.json
    python benchmarks/store_compare.py --sizes 100000 --client-location memory --client-queries 20 \
        --json store_compare_100k.json

qdrant-client's local mode with `path=` writes every upserted point to SQLite (5k points took
~2 minutes here), so the 100k run puts it in memory (`:memory:`), which only helps it; it
answers the first `--client-queries` queries only (seconds each at 100k).

Prints a table and writes JSON (uptime load included).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

DIM = 384
VOCAB = 30_000


def synthetic(n: int, rng: np.random.Generator, terms: int):
    dense = rng.standard_normal((n, DIM)).astype(np.float32)
    dense /= np.linalg.norm(dense, axis=1, keepdims=True)
    probs = 1.0 / np.arange(1, VOCAB + 1)
    probs /= probs.sum()
    sparse = []
    for _ in range(n):
        ids, counts = np.unique(rng.choice(VOCAB, size=terms, p=probs), return_counts=True)
        sparse.append((ids.tolist(), counts.astype(np.float32).tolist()))
    return dense, sparse


class ClientStore:
    """qdrant-client local mode (pure Python + numpy)."""

    name = "qdrant-client local (path=)"

    def __init__(self, path: str | None):
        from qdrant_client import QdrantClient, models

        self.models = models
        self.client = QdrantClient(path=path) if path else QdrantClient(":memory:")
        if not path:
            self.name = "qdrant-client local (:memory:)"
        self.client.create_collection(
            "bench",
            vectors_config={"dense": models.VectorParams(size=DIM, distance=models.Distance.COSINE)},
            sparse_vectors_config={"bm25": models.SparseVectorParams(modifier=models.Modifier.IDF)},
        )

    def upsert(self, ids, dense, sparse):
        m = self.models
        points = [
            m.PointStruct(
                id=i,
                vector={"dense": d.tolist(), "bm25": m.SparseVector(indices=s[0], values=s[1])},
                payload={"doc_id": f"d{i}"},
            )
            for i, d, s in zip(ids, dense, sparse)
        ]
        self.client.upsert("bench", points=points, wait=True)

    def finish(self):
        pass

    def query(self, dense, sparse, limit=100):
        m = self.models
        return self.client.query_points(
            "bench",
            prefetch=[
                m.Prefetch(query=dense.tolist(), using="dense", limit=limit),
                m.Prefetch(query=m.SparseVector(indices=sparse[0], values=sparse[1]), using="bm25", limit=limit),
            ],
            query=m.RrfQuery(rrf=m.Rrf(k=2)),
            limit=limit,
            with_payload=True,
        ).points

    def close(self):
        self.client.close()


class EdgeStore:
    """qdrant-edge-py: Qdrant's Rust engine in-process."""

    name = "qdrant-edge-py (EdgeShard)"

    def __init__(self, path: str):
        import qdrant_edge as qe

        self.qe = qe
        config = qe.EdgeConfig(
            vectors={"dense": qe.EdgeVectorParams(size=DIM, distance=qe.Distance.Cosine)},
            sparse_vectors={"bm25": qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
        )
        self.shard = qe.EdgeShard.create(path, config)

    def upsert(self, ids, dense, sparse):
        qe = self.qe
        points = [
            qe.Point(id=i, vector={"dense": d.tolist(), "bm25": qe.SparseVector(s[0], s[1])}, payload={"doc_id": f"d{i}"})
            for i, d, s in zip(ids, dense, sparse)
        ]
        self.shard.update(qe.UpdateOperation.upsert_points(points))

    def finish(self):
        self.shard.optimize()

    def query(self, dense, sparse, limit=100):
        qe = self.qe
        request = qe.QueryRequest(
            limit=limit,
            prefetches=[
                qe.Prefetch(limit=limit, query=qe.Query.Nearest(dense.tolist(), using="dense")),
                qe.Prefetch(limit=limit, query=qe.Query.Nearest(qe.SparseVector(sparse[0], sparse[1]), using="bm25")),
            ],
            query=qe.Fusion.Rrf(k=2),
            with_payload=True,
        )
        return self.shard.query(request)

    def close(self):
        self.shard.close()


def measure(size: int, n_queries: int, client_location: str = "path", client_queries: int | None = None, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    dense, sparse = synthetic(size, rng, terms=60)
    q_dense, q_sparse = synthetic(n_queries, rng, terms=8)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        client = ClientStore(os.path.join(tmp, "client") if client_location == "path" else None)
        client.max_queries = client_queries or n_queries
        edge = EdgeStore(os.path.join(tmp, "edge"))
        edge.max_queries = n_queries
        stores = [client, edge]
        for store in stores:
            start = time.perf_counter()
            for lo in range(0, size, 1000):
                store.upsert(range(lo, min(lo + 1000, size)), dense[lo : lo + 1000], sparse[lo : lo + 1000])
            store.finish()
            store.index_s = time.perf_counter() - start
            store.latencies = []
            store.query(q_dense[0], q_sparse[0])  # warm-up
        for qi in range(n_queries):
            for store in stores:
                if qi >= store.max_queries:
                    continue
                start = time.perf_counter()
                hits = store.query(q_dense[qi], q_sparse[qi])
                store.latencies.append((time.perf_counter() - start) * 1000)
                assert len(hits) > 0
        for store in stores:
            lat = sorted(store.latencies)
            rows.append(
                {
                    "store": store.name,
                    "points": size,
                    "index_s": round(store.index_s, 2),
                    "p50_ms": round(statistics.median(lat), 2),
                    "p95_ms": round(lat[int(0.95 * (len(lat) - 1))], 2),
                    "queries": len(lat),
                }
            )
            store.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 100_000])
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--client-location", choices=["path", "memory"], default="path")
    parser.add_argument("--client-queries", type=int, default=None, help="queries for qdrant-client (default: all)")
    parser.add_argument("--json", default="store_compare.json")
    args = parser.parse_args()
    load_before = os.getloadavg()
    rows = []
    for size in args.sizes:
        rows.extend(measure(size, args.queries, args.client_location, args.client_queries))
    header = f"{'store':32} {'points':>8} {'index s':>9} {'p50 ms':>8} {'p95 ms':>8} {'queries':>8}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['store']:32} {r['points']:>8} {r['index_s']:>9.2f} {r['p50_ms']:>8.2f} {r['p95_ms']:>8.2f} {r['queries']:>8}")
    out = {"rows": rows, "loadavg_before": load_before, "loadavg_after": os.getloadavg(), "cpus": os.cpu_count()}
    Path(args.json).write_text(json.dumps(out, indent=2))
    print(f"load average before/after: {load_before} / {out['loadavg_after']}; JSON written to {args.json}")


if __name__ == "__main__":
    main()
