"""`vllm-rerank` against a real vLLM CPU server vs the in-process `cross-encoder`, same weights.

SciFact test queries (a seeded sample), BM25 (bm25s) top-100 candidates each. For every setting:
wall time, pairs/s and ms per query, and agreement with the in-process cross-encoder (queries
ranked identically, largest |relevance difference|, nDCG@10 of both). Settings:

- `cross-encoder (in-process)`: torch on CPU, one `rank` per query;
- `vllm-rerank`: one request per query (`rank`, queries one after another);
- `vllm-rerank rank_many`: every query at once (`max_concurrency` 8);
- `vllm-rerank split 25 / conc C`: `max_documents_per_request` 25 (4 sub-requests per query) with
  `max_concurrency` 1, 4 and 8;
- `raw httpx POST`: the same request bodies posted by a bare synchronous httpx client, i.e. the
  server's own time plus the HTTP round trip, to say what the rankbridge client adds;
- `client work only`: building requests, parsing and checking answers and ranking, on canned
  server answers, no network (per query).

Settings are interleaved per query (rotating their order) so load from other processes affects
each alike; `rank_many` (all queries at once) runs after them.

Usage:
    python benchmarks/remote.py                                  # starts a vLLM server (bash .ci/setup_vllm first)
    python benchmarks/remote.py --base-url http://127.0.0.1:8000 --queries 2     # a server you started
Prints a table and writes JSON (default benchmarks/remote_results.json).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path

from rankbridge.integrations.evaluation.beir import load_beir
from rankbridge.integrations.evaluation.metrics import evaluate
from rankbridge.llm_rankers.engines.vllm_process import VLLMServerProcess
from rankbridge.rerankers import load_reranker
from rankbridge.rerankers.core.paths import data_dir, resolve_model
from rankbridge.rerankers.runtime.rerank_http import check_answer

logger = logging.getLogger("remote_benchmark")

MODEL = "minilm-l6-ce-weak"
SERVED = "minilm"


def bm25_top(data, qids: list[str], depth: int) -> dict[str, list[str]]:
    """BM25 (bm25s) over SciFact title + text: the first stage, top `depth` per query."""
    import bm25s

    ids = list(data.corpus)
    texts = [f"{data.corpus[d]['title']} {data.corpus[d]['text']}" for d in ids]
    index = bm25s.BM25()
    index.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
    queries = [data.queries[q] for q in qids]
    hits, _ = index.retrieve(bm25s.tokenize(queries, stopwords="en", show_progress=False), k=depth, show_progress=False)
    return {qid: [ids[i] for i in row] for qid, row in zip(qids, hits)}


def timed(fn):
    started = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - started


def row(name: str, wall: float, pairs: int, queries: int, **extra) -> dict:
    return {"setting": name, "wall_s": round(wall, 3), "pairs_per_s": round(pairs / wall, 1) if wall else None,
            "ms_per_query": round(1000 * wall / queries, 1), **extra}


def agreement(results: list, reference: list) -> dict:
    same = sum(a.indices == b.indices for a, b in zip(results, reference))
    worst = 0.0
    for a, b in zip(results, reference):
        ref = {r.index: r.relevance for r in b}
        worst = max([worst] + [abs(r.relevance - ref[r.index]) for r in a])
    return {"identical_rankings": f"{same}/{len(reference)}", "max_abs_relevance_diff": float(f"{worst:.2e}")}


def run(args) -> dict:
    data = load_beir(Path(data_dir()) / "beir" / "scifact")
    qids = list(data.eval_queries(sample=args.queries, seed=args.seed))
    first_stage = bm25_top(data, qids, args.candidates)
    queries = [data.queries[q] for q in qids]
    lists = [[f"{data.corpus[d]['title']} {data.corpus[d]['text']}" for d in first_stage[q]] for q in qids]
    pairs = sum(len(c) for c in lists)

    def ndcg(results) -> float:
        return round(evaluate({q: [first_stage[q][i] for i in r.indices] for q, r in zip(qids, results)},
                              {q: data.qrels[q] for q in qids})["ndcg@10"], 4)

    process = None
    base_url = args.base_url
    if base_url is None:
        log_path = Path(args.server_log)
        process = VLLMServerProcess(resolve_model(MODEL), SERVED, context_length=512, log_path=log_path,
                                    extra_args=["--max-num-seqs", "128"])
        process.start(timeout=args.startup_timeout)
        base_url = process.base_url.removesuffix("/v1")
    rows: list[dict] = []
    try:
        import httpx

        local = load_reranker({"backend": "cross-encoder", "model": MODEL, "device": "cpu", "dtype": "float32"})

        def served(**fields):
            return load_reranker({"backend": "vllm-rerank", "model": SERVED, "base_url": base_url, **fields})

        remote = served(max_concurrency=8)
        splits = {c: served(max_documents_per_request=25, max_concurrency=c) for c in (1, 4, 8)}
        client = remote.client
        http = httpx.Client(timeout=120)
        answers: list = []

        def raw_post(q, c):
            response = http.post(client.url, json=client.dialect.build_request(q, c, client.settings))
            response.raise_for_status()
            answers.append(response.json())

        settings = {
            "cross-encoder (in-process)": local.rank,
            "vllm-rerank": remote.rank,
            **{f"vllm-rerank split 25 / conc {c}": r.rank for c, r in splits.items()},
            "raw httpx POST (same bodies)": raw_post,
        }
        for fn in settings.values():  # warm-up: weights, kernels, connections
            fn(queries[0], lists[0][:8])
        answers.clear()
        # Interleaved per query (rotating the order), so load from other processes hits every
        # setting alike.
        walls = {name: 0.0 for name in settings}
        outputs: dict[str, list] = {name: [] for name in settings}
        names = list(settings)
        for i, (q, c) in enumerate(zip(queries, lists)):
            for name in names[i % len(names):] + names[: i % len(names)]:
                out, wall = timed(lambda fn=settings[name]: fn(q, c))
                walls[name] += wall
                outputs[name].append(out)
        reference = outputs["cross-encoder (in-process)"]
        for name in names:
            extra = {}
            if name != "raw httpx POST (same bodies)":
                extra["ndcg10"] = ndcg(outputs[name])
                if name != "cross-encoder (in-process)":
                    extra.update(agreement(outputs[name], reference))
            rows.append(row(name, walls[name], pairs, len(queries), **extra))
        raw_wall = walls["raw httpx POST (same bodies)"]
        results, wall = timed(lambda: remote.rank_many(queries, lists))
        rows.append(row("vllm-rerank rank_many (conc 8)", wall, pairs, len(queries), ndcg10=ndcg(results),
                        **agreement(results, reference)))
        http.close()

        # What the client does per query besides waiting: request, parse, check, rank (no network).
        dialect = client.dialect

        def client_work():
            for q, c, body in zip(queries, lists, answers):
                dialect.build_request(q, c, client.settings)
                parsed = dialect.parse_response(body, {}, client.settings)
                check_answer(dialect.api, parsed.items, len(c))
                scores = [0.0] * len(c)
                for index, score, _ in parsed.items:
                    scores[index] = score
                sorted(range(len(c)), key=lambda k: -scores[k])

        _, wall = timed(client_work)
        rows.append(row("client work only (no network)", wall, pairs, len(queries)))
        for reranker in (local, remote, *splits.values()):
            reranker.close()
    finally:
        if process is not None:
            process.stop()

    single = next(r for r in rows if r["setting"] == "vllm-rerank")
    report = {
        "benchmark": "remote",
        "model": MODEL,
        "queries": len(queries),
        "candidates_per_query": args.candidates,
        "pairs": pairs,
        "base_url": base_url if args.base_url else "(started by the benchmark)",
        "cpu_count": os.cpu_count(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "client_overhead_ms_per_query": round(1000 * (single["wall_s"] - raw_wall) / len(queries), 1),
        "rows": rows,
    }
    return report


def print_table(report: dict) -> None:
    cols = ["setting", "wall_s", "pairs_per_s", "ms_per_query", "identical_rankings", "max_abs_relevance_diff", "ndcg10"]
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in report["rows"])) for c in cols]
    print(" | ".join(c.ljust(w) for c, w in zip(cols, widths)))
    print("-+-".join("-" * w for w in widths))
    for r in report["rows"]:
        print(" | ".join(str(r.get(c, "")).ljust(w) for c, w in zip(cols, widths)))
    print(f"{report['queries']} queries x {report['candidates_per_query']} candidates; rankbridge client adds "
          f"{report['client_overhead_ms_per_query']} ms per query over a bare httpx POST of the same body")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", help="a running vLLM server (origin, e.g. http://127.0.0.1:8000); default: start one")
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--startup-timeout", type=float, default=900)
    parser.add_argument("--server-log", default=str(Path(tempfile.gettempdir()) / "rankbridge_remote_vllm.log"),
                        help="where a server the benchmark starts writes its output")
    parser.add_argument("--out", default="benchmarks/remote_results.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    report = run(args)
    print_table(report)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
