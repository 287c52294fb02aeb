"""First-stage quality and speed on SciFact: dense vs BM25 vs hybrid (RRF, DBSF), indexing time,
query latency of the embedded default store at 5k (SciFact) and 100k (synthetic 384-d) points.

    python benchmarks/first_stage.py --json first_stage.json
    python benchmarks/first_stage.py --store ~/.cache/rankbridge/stores/scifact --synthetic 0  # reuse the demo's store

Targets (issue 4): hybrid RRF nDCG@10 >= max(dense, BM25) + 0.02; hybrid Recall@100 >= 0.90;
p50 query latency <= 20 ms at 5k and <= 50 ms at 100k; indexing SciFact <= 3 minutes on 2 cores.
Indexing is timed from scratch (a fresh store; the ONNX export is made beforehand and not
counted, it is a one-off per machine). Process CPU time is reported beside wall time because
the machine is shared; `uptime` load is recorded. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from store_compare import DIM, synthetic  # noqa: E402  (one synthetic-data helper for both benchmarks)

from rankbridge.integrations.evaluation.beir import load_beir  # noqa: E402
from rankbridge.integrations.first_stage.embeddings import Bm25Embedder, OnnxDenseEmbedder  # noqa: E402
from rankbridge.integrations.evaluation.metrics import METRICS, evaluate  # noqa: E402
from rankbridge.integrations.first_stage.qdrant import HybridRetriever, _EdgeStore, _Request, point_id  # noqa: E402
from rankbridge.rerankers.core.paths import data_dir  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def quality(retriever: HybridRetriever, dataset, configs: list[tuple[str, str, str, int]]) -> dict:
    queries = dataset.eval_queries()
    texts = list(queries.values())
    out = {}
    for name, mode, fusion, k in configs:
        retriever.fusion, retriever.rrf_k = fusion, k
        hits = retriever.search_many(texts, limit=100, mode=mode)
        out[name] = evaluate(dict(zip(queries, hits)), dataset.qrels)
    retriever.fusion, retriever.rrf_k = "rrf", 2
    return out


def latency_end_to_end(retriever: HybridRetriever, texts: list[str]) -> dict:
    retriever.search(texts[0])  # warm-up
    total, store_only = [], []
    for text in texts:
        start = time.perf_counter()
        dense = retriever.dense_embedder.embed_queries([text])[0]
        sparse = retriever.sparse_embedder.embed_queries([text])[0]
        mid = time.perf_counter()
        retriever._store.query([_Request(dense.tolist(), sparse, "hybrid", "rrf", 2, 100, 100, None)])
        end = time.perf_counter()
        total.append((end - start) * 1000)
        store_only.append((end - mid) * 1000)
    return {
        "p50_ms_end_to_end": percentile(total, 50),
        "p95_ms_end_to_end": percentile(total, 95),
        "p50_ms_store": percentile(store_only, 50),
        "p95_ms_store": percentile(store_only, 95),
        "queries": len(texts),
    }


def latency_synthetic(size: int, n_queries: int, folder: Path) -> dict:
    rng = np.random.default_rng(0)
    dense, sparse = synthetic(size, rng, terms=60)
    q_dense, q_sparse = synthetic(n_queries, rng, terms=8)
    from rankbridge.integrations.first_stage.embeddings import SparseVector

    store = _EdgeStore(folder / "synthetic", {"dense": "synthetic", "sparse": "synthetic", "dim": DIM})
    start = time.perf_counter()
    for lo in range(0, size, 1000):
        ids = [point_id(i) for i in range(lo, min(lo + 1000, size))]
        sp = [SparseVector(*s) for s in sparse[lo : lo + 1000]]
        store.upsert(ids, dense[lo : lo + 1000], sp, [{"doc_id": i, "text": ""} for i in range(lo, lo + len(ids))])
    upsert_s = time.perf_counter() - start
    store.finish()
    finish_s = time.perf_counter() - start - upsert_s
    times = []
    requests = [_Request(q_dense[i].tolist(), SparseVector(*q_sparse[i]), "hybrid", "rrf", 2, 100, 100, None) for i in range(n_queries)]
    store.query(requests[:1])
    for request in requests:
        t0 = time.perf_counter()
        hits = store.query([request])[0]
        times.append((time.perf_counter() - t0) * 1000)
        assert len(hits) == 100
    store.close()
    return {
        "points": size,
        "upsert_s": upsert_s,
        "optimize_s": finish_s,
        "p50_ms_store": percentile(times, 50),
        "p95_ms_store": percentile(times, 95),
        "queries": n_queries,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--beir", type=Path, default=None, help="default: $RANKBRIDGE_DATA_DIR/beir/scifact")
    parser.add_argument("--synthetic", type=int, default=100_000, help="points for the synthetic latency run (0: skip)")
    parser.add_argument("--latency-queries", type=int, default=300)
    parser.add_argument("--store", type=Path, default=None, help="reuse this already indexed store (indexing is then not timed)")
    parser.add_argument("--json", default="first_stage.json")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    folder = args.beir or data_dir() / "beir" / "scifact"
    dataset = load_beir(folder)
    load_before = os.getloadavg()
    dense, sparse = OnnxDenseEmbedder(), Bm25Embedder()  # exports the ONNX model once (not timed)
    result: dict = {"dataset": str(folder), "documents": len(dataset.corpus), "test_queries": len(dataset.qrels)}
    with tempfile.TemporaryDirectory(prefix="rankbridge-bench-") as tmp:
        with HybridRetriever(args.store or Path(tmp) / "store", dense_embedder=dense, sparse_embedder=sparse) as retriever:
            if args.store is not None and retriever.count() == len(dataset.corpus):
                result["indexing"] = None
            else:
                wall0, cpu0 = time.perf_counter(), time.process_time()
                retriever.index(dataset.documents())
                result["indexing"] = {
                    "wall_s": time.perf_counter() - wall0,
                    "process_cpu_s": time.process_time() - cpu0,
                    "cpus": os.cpu_count(),
                    "loadavg_after": os.getloadavg(),
                }
            configs = [
                ("dense", "dense", "rrf", 2),
                ("BM25 (sparse)", "sparse", "rrf", 2),
                ("hybrid RRF k=2", "hybrid", "rrf", 2),
                ("hybrid RRF k=60", "hybrid", "rrf", 60),
                ("hybrid DBSF", "hybrid", "dbsf", 2),
            ]
            result["quality"] = quality(retriever, dataset, configs)
            texts = list(dataset.eval_queries().values())[: args.latency_queries]
            result["latency_5k"] = latency_end_to_end(retriever, texts) | {"points": retriever.count()}
        if args.synthetic:
            result["latency_synthetic"] = latency_synthetic(args.synthetic, args.latency_queries, Path(tmp))
    result["loadavg_before"], result["loadavg_after"] = load_before, os.getloadavg()

    q = result["quality"]
    best_single = max(q["dense"]["ndcg@10"], q["BM25 (sparse)"]["ndcg@10"])
    hybrid = q["hybrid RRF k=2"]
    result["targets"] = {
        "hybrid_ndcg_margin": hybrid["ndcg@10"] - best_single,
        "hybrid_ndcg_margin_ok": hybrid["ndcg@10"] >= best_single + 0.02,
        "hybrid_recall100_ok": hybrid["recall@100"] >= 0.90,
        "latency_5k_ok": result["latency_5k"]["p50_ms_end_to_end"] <= 20,
        "latency_100k_ok": result.get("latency_synthetic", {}).get("p50_ms_store", 0) <= 50,
        "indexing_ok": None if result["indexing"] is None else result["indexing"]["wall_s"] <= 180,
    }
    print(f"SciFact test ({len(dataset.qrels)} queries, {len(dataset.corpus)} documents), first stage top 100")
    print(f"{'configuration':18} " + " ".join(f"{m:>10}" for m in METRICS))
    for name, metrics in q.items():
        print(f"{name:18} " + " ".join(f"{metrics[m]:>10.4f}" for m in METRICS))
    ix = result["indexing"]
    if ix is None:
        print(f"\nindexing not timed: reused the store at {args.store}")
    else:
        print(f"\nindexing {result['documents']} docs: {ix['wall_s']:.1f} s wall, {ix['process_cpu_s']:.1f} s process CPU on {ix['cpus']} cores")
    l5 = result["latency_5k"]
    print(
        f"query latency at {l5['points']} docs: p50 {l5['p50_ms_end_to_end']:.1f} ms end to end "
        f"(embed + hybrid query), store only p50 {l5['p50_ms_store']:.1f} ms"
    )
    if "latency_synthetic" in result:
        ls = result["latency_synthetic"]
        print(
            f"query latency at {ls['points']} synthetic 384-d points: store p50 {ls['p50_ms_store']:.1f} ms, "
            f"p95 {ls['p95_ms_store']:.1f} ms (upsert {ls['upsert_s']:.0f} s, optimize {ls['optimize_s']:.0f} s)"
        )
    print(f"targets: {json.dumps(result['targets'])}")
    print(f"load average before {load_before}, after {result['loadavg_after']}")
    Path(args.json).write_text(json.dumps(result, indent=2))
    print(f"JSON written to {args.json}")


if __name__ == "__main__":
    main()
