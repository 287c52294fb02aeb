"""Cost of listwise reranking 100 candidates with the real vLLM CPU server (SmolLM2-135M-Instruct).

For each setting (mode, window/step, passes, sequential or concurrent windows) and each query:
LLM calls, prompt and completion tokens, wall time, nDCG@10. Settings are interleaved per query,
so load from other processes affects every setting alike; `uptime` load is recorded with the numbers.
The backend's concurrent windows give exactly the sequential result (only windows sharing no
candidate run at once), so for them only time can differ.

A 135M model ranks SciFact barely better than chance, so the server part measures COST. Whether
the rejected "waves" variant (every other window at once: a different algorithm) loses quality
against the sequential sweep is a property of the scheduling, measured without any LLM: every
SciFact test query's BM25 top 100 is reordered by a window ranker that knows the qrels (exactly,
or with Gaussian noise on the grades), with sequential windows and with waves.

Usage:
    python benchmarks/listwise_cost.py                     # starts a vLLM server (bash .ci/setup_vllm first)
    python benchmarks/listwise_cost.py --base-url http://127.0.0.1:8000/v1 --queries 3   # a server you started
    python benchmarks/listwise_cost.py --queries 1 --max-passage-tokens 32 \
        --only "first_token 20/10" "first_token 10/5" "first_token 20/20 seq" "first_token 20/20 conc" "generate 20/10"
Prints a table and writes JSON (default results/listwise_cost.json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import time
from pathlib import Path

import numpy as np

from rankbridge.integrations.evaluation.beir import load_beir
from rankbridge.integrations.evaluation.metrics import evaluate
from rankbridge.llm_rankers.listwise.reranker import ListwiseReranker
from rankbridge.llm_rankers.listwise.scheduler import apply_window, plan_windows, slide
from rankbridge.llm_rankers.engines.vllm_process import VLLMServerProcess
from rankbridge.rerankers.runtime.gguf import ensure_safetensors
from rankbridge.rerankers.core.paths import data_dir

logger = logging.getLogger("listwise_cost")

SERVER_SETTINGS = [
    {"name": "first_token 20/10", "mode": "first_token", "window_size": 20, "step": 10},
    {"name": "first_token 10/5", "mode": "first_token", "window_size": 10, "step": 5},
    {"name": "first_token 20/20 seq", "mode": "first_token", "window_size": 20, "step": 20, "concurrent_windows": False},
    {"name": "first_token 20/20 conc", "mode": "first_token", "window_size": 20, "step": 20, "concurrent_windows": True},
    {"name": "first_token 20/10 x2 seq", "mode": "first_token", "window_size": 20, "step": 10, "num_passes": 2,
     "concurrent_windows": False},
    {"name": "first_token 20/10 x2 conc", "mode": "first_token", "window_size": 20, "step": 10, "num_passes": 2,
     "concurrent_windows": True},
    {"name": "generate 20/10", "mode": "generate", "window_size": 20, "step": 10},
    {"name": "generate 20/20 conc", "mode": "generate", "window_size": 20, "step": 20, "concurrent_windows": True},
]


def wave_windows(n: int, window: int, step: int) -> list[list[tuple[int, int]]]:
    """The rejected variant: window i of a pass in wave i mod ceil(window/step); waves in order."""
    windows = plan_windows(n, window, step)
    m = max(1, -(-window // step))
    waves: list[list[tuple[int, int]]] = []
    for i, w in enumerate(windows):
        k = i % m
        while k < len(waves) and any(a < w[1] and w[0] < b for a, b in waves[k]):
            k += 1
        if k == len(waves):
            waves.append([])
        waves[k].append(w)
    return waves


def load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def bm25_top(data, depth: int) -> dict[str, list[str]]:
    """BM25 (bm25s) over SciFact title + text: the first stage, top `depth` per test query."""
    import bm25s

    ids = list(data.corpus)
    texts = [f"{data.corpus[d]['title']} {data.corpus[d]['text']}" for d in ids]
    index = bm25s.BM25()
    index.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
    queries = data.eval_queries()
    hits, _ = index.retrieve(
        bm25s.tokenize(list(queries.values()), stopwords="en", show_progress=False), k=depth, show_progress=False
    )
    return {qid: [ids[i] for i in row] for qid, row in zip(queries, hits)}


def simulate(data, run: dict[str, list[str]], noise: float, window: int, step: int, seed: int = 0) -> dict[str, float]:
    """nDCG@10 of the sequential sweep and of waves with a qrels-aware window ranker (the same
    noisy grade per document in both)."""
    rng = np.random.default_rng(seed)
    keys_by_query = {
        qid: {d: data.qrels.get(qid, {}).get(d, 0) + (rng.normal(0, noise) if noise else 0.0) for d in docs}
        for qid, docs in run.items()
    }
    out = {}
    for variant in ("sequential", "waves"):
        reranked = {}
        for qid, docs in run.items():
            keys = keys_by_query[qid]

            def best_first(items, docs=docs, keys=keys):
                return sorted(range(len(items)), key=lambda p: (-keys[docs[items[p]]], p))

            order = list(range(len(docs)))
            if variant == "sequential":
                async def rank_window(items, best_first=best_first):
                    return best_first(items)

                order = asyncio.run(slide(order, plan_windows(len(docs), window, step), rank_window))
            else:
                for wave in wave_windows(len(docs), window, step):
                    perms = [best_first(order[s:e]) for s, e in wave]  # all read before any is applied
                    for w, perm in zip(wave, perms):
                        apply_window(order, w, perm)
            reranked[qid] = [docs[i] for i in order]
        out[variant] = evaluate(reranked, data.qrels)["ndcg@10"]
    return out


def server_part(args, data, run, base_url: str, model_dir: Path) -> tuple[list[dict], dict]:
    candidates_q = [q for q in data.eval_queries() if any(d in data.qrels[q] for d in run[q][: args.candidates])]
    qids = sorted(random.Random(args.seed).sample(candidates_q, min(args.queries, len(candidates_q))), key=int)
    settings = [s for s in SERVER_SETTINGS if not args.only or s["name"] in args.only]
    rows = {s["name"]: {"setting": s, "per_query": []} for s in settings}
    rerankers = {
        s["name"]: ListwiseReranker(
            {
                "backend": "listwise",
                "base_url": base_url,
                "model": "smollm2-135m",
                "tokenizer": str(model_dir),
                "max_passage_tokens": args.max_passage_tokens,
                "timeout": 600,
                **{k: v for k, v in s.items() if k != "name"},
            }
        )
        for s in settings
    }
    for reranker in rerankers.values():  # load tokenizers and open connections before any timing
        reranker._token_counter()
        reranker.rank("warm-up", ["a", "b"])
    for n_q, qid in enumerate(qids):
        docs = run[qid][: args.candidates]
        texts = [f"{data.corpus[d]['title']}. {data.corpus[d]['text']}" for d in docs]
        order_settings = settings if n_q % 2 == 0 else list(reversed(settings))  # interleave, alternate order
        for s in order_settings:
            reranker = rerankers[s["name"]]
            started = time.perf_counter()
            results = reranker.rank(data.queries[qid], texts)
            wall = time.perf_counter() - started
            stats = reranker.last_stats
            ndcg = evaluate({qid: [docs[i] for i in results.indices]}, {qid: data.qrels[qid]})["ndcg@10"]
            rows[s["name"]]["per_query"].append(
                {"qid": qid, "wall_s": wall, "ndcg@10": ndcg, "fallback": results.fallback_reason, **stats.to_dict()}
            )
            logger.info("%s q%s: %.1fs, %d calls, %d+%d tokens", s["name"], qid, wall, stats.calls,
                        stats.prompt_tokens, stats.completion_tokens)
    bm25 = evaluate({q: run[q][: args.candidates] for q in qids}, {q: data.qrels[q] for q in qids})["ndcg@10"]
    for reranker in rerankers.values():
        reranker.close()
    summary = []
    for name, row in rows.items():
        pq = row["per_query"]
        summary.append(
            {
                "setting": name,
                "estimated_calls": rerankers[name].estimate_calls(args.candidates),
                "calls": float(np.mean([r["calls"] for r in pq])),
                "prompt_tokens": float(np.mean([r["prompt_tokens"] for r in pq])),
                "completion_tokens": float(np.mean([r["completion_tokens"] for r in pq])),
                "wall_s": float(np.mean([r["wall_s"] for r in pq])),
                "unusable_windows": float(np.mean([r["unusable_windows"] for r in pq])),
                "ndcg@10": float(np.mean([r["ndcg@10"] for r in pq])),
                "per_query": pq,
            }
        )
    return summary, {"queries": qids, "bm25_ndcg@10_same_queries": bm25}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", help="use this running server (served name smollm2-135m) instead of starting one")
    parser.add_argument("--queries", type=int, default=3, help="SciFact test queries for the server part")
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--max-passage-tokens", type=int, default=64)
    parser.add_argument("--only", nargs="*", help="run only the settings with these names")
    parser.add_argument("--skip-server", action="store_true", help="only the LLM-free scheduling measurement")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="results/listwise_cost.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)

    data = load_beir(data_dir() / "beir" / "scifact")
    run = bm25_top(data, args.candidates)
    report: dict = {"load_before": load_avg(), "candidates": args.candidates}
    report["bm25_ndcg@10_all_queries"] = evaluate(run, data.qrels)["ndcg@10"]
    report["scheduling"] = [
        {"window": w, "step": s, "noise": noise, **simulate(data, run, noise, w, s)}
        for (w, s) in [(20, 10), (10, 5)]
        for noise in (0.0, 0.3, 0.6)
    ]
    if not args.skip_server:
        model_dir = ensure_safetensors()
        if args.base_url:
            report["server"], report["server_info"] = server_part(args, data, run, args.base_url, model_dir)
        else:
            # No prefix caching: settings share prompts (same query, same windows), and a cache hit
            # would make a later setting look cheaper than it is.
            with VLLMServerProcess(model_dir, "smollm2-135m", extra_args=["--no-enable-prefix-caching"]) as server:
                report["server_startup_s"] = server.startup_s
                report["server"], report["server_info"] = server_part(args, data, run, server.base_url, model_dir)
    report["load_after"] = load_avg()

    print(f"\nScheduling alone (no LLM), SciFact test ({len(run)} queries), BM25 top {args.candidates}: "
          f"BM25 nDCG@10 {report['bm25_ndcg@10_all_queries']:.4f}")
    print(f"{'window/step':>11} {'window ranker':>18} {'sequential':>11} {'waves':>11}")
    for row in report["scheduling"]:
        ranker = "qrels exact" if not row["noise"] else f"qrels+N(0,{row['noise']:g}^2)"
        print(f"{row['window']:>5}/{row['step']:<5} {ranker:>18} {row['sequential']:>11.4f} {row['waves']:>11.4f}")
    if "server" in report:
        info = report["server_info"]
        print(f"\nvLLM CPU server, SmolLM2-135M-Instruct, {args.candidates} candidates, {len(info['queries'])} queries "
              f"(means per query); load {report['load_before']} -> {report['load_after']}")
        print(f"{'setting':<24} {'calls':>5} {'prompt tok':>10} {'compl tok':>9} {'wall s':>7} {'unusable':>8} {'nDCG@10':>8}")
        for row in report["server"]:
            print(f"{row['setting']:<24} {row['calls']:>5.0f} {row['prompt_tokens']:>10.0f} {row['completion_tokens']:>9.0f} "
                  f"{row['wall_s']:>7.1f} {row['unusable_windows']:>8.1f} {row['ndcg@10']:>8.4f}")
        print(f"{'BM25 (same queries)':<24} {'':>5} {'':>10} {'':>9} {'':>7} {'':>8} {info['bm25_ndcg@10_same_queries']:>8.4f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
