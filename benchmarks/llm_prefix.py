"""Prefix sharing in `llm-yes-no`: pairs/s with and without it, on SmolLM2-135M-Instruct.

Per SciFact test query: its BM25 top `--candidates` documents, each cut to `--doc-tokens` tokens
(SmolLM2's tokenizer), scored by `llm-yes-no` with `share_prefix` on and off. Settings are
interleaved per query and per repeat, so load from other processes hits both alike; the median of
the repeats is reported. Also: the shared prefix length, the largest score difference between the
two (they must agree to 1e-4), and the speed-up that token counts alone predict,
(P + D) / (D + P / N) for a prefix of P tokens, N documents and D document+suffix tokens each.

Settings (`--settings`):
    qwen3     the qwen3-reranker preset (system line, <Instruct>, query, think block)
    default   the backend's default chat prompt
    long-task qwen3-reranker with a ~300-token task description (few-shot style instructions)

Usage:
    python benchmarks/llm_prefix.py                          # 10 queries x 20 candidates x ~200 tokens
    python benchmarks/llm_prefix.py --queries 2 --repeats 1  # a quick check
Prints a table and writes JSON (default results/llm_prefix.json).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import time
from pathlib import Path

import numpy as np

from rankbridge.rerankers import load_reranker
from rankbridge.rerankers.core.paths import data_dir
from rankbridge.rerankers.runtime.gguf import ensure_safetensors

logger = logging.getLogger("llm_prefix")

LONG_TASK = (
    "Given a scientific claim, retrieve abstracts that support or refute it. A relevant abstract reports a "
    "finding about the same population, intervention or exposure, and outcome as the claim; it may agree or "
    "disagree with the claim. Abstracts that only share vocabulary, study a different population, describe "
    "methods without results, or discuss the topic in general terms are not relevant. "
) * 5

SETTINGS = {
    "qwen3": {"preset": "qwen3-reranker"},
    "default": {},
    "long-task": {"preset": "qwen3-reranker", "task": LONG_TASK},
}


def candidates(num_queries: int, top_k: int, doc_tokens: int, tokenizer) -> list[dict]:
    import bm25s

    folder = data_dir() / "beir" / "scifact"
    corpus = [json.loads(line) for line in open(folder / "corpus.jsonl", encoding="utf-8")]
    queries = {}
    for line in open(folder / "queries.jsonl", encoding="utf-8"):
        row = json.loads(line)
        queries[row["_id"]] = row["text"]
    with open(folder / "qrels" / "test.tsv", encoding="utf-8") as handle:
        next(handle)
        qids = list(dict.fromkeys(line.split("\t")[0] for line in handle))[:num_queries]
    texts = [f"{d.get('title', '')} {d.get('text', '')}".strip() for d in corpus]
    index = bm25s.BM25()
    index.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
    hits, _ = index.retrieve(bm25s.tokenize([queries[q] for q in qids], stopwords="en", show_progress=False),
                             k=top_k, show_progress=False)
    items = []
    for row, qid in enumerate(qids):
        docs = []
        for j in hits[row]:
            ids = tokenizer(" " + texts[int(j)], add_special_tokens=False)["input_ids"][:doc_tokens]
            docs.append(tokenizer.decode(ids).strip())
        items.append({"qid": qid, "query": queries[qid], "docs": docs})
    return items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--doc-tokens", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--out", default="results/llm_prefix.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    folder = str(ensure_safetensors())
    report = {"model": "SmolLM2-135M-Instruct", "queries": args.queries, "candidates": args.candidates,
              "doc_tokens": args.doc_tokens, "repeats": args.repeats, "batch_size": args.batch_size,
              "load_before": os.getloadavg()[0], "settings": {}}
    items = None
    rows = []
    for name in args.settings:
        base = {"backend": "llm-yes-no", "model": folder, "max_length": 2048, "batch_size": args.batch_size,
                "num_threads": args.threads, **SETTINGS[name]}
        reranker = load_reranker(base)
        if items is None:
            items = candidates(args.queries, args.candidates, args.doc_tokens, reranker.tokenizer)
        times = {True: [], False: []}
        max_diff, prefix_tokens, rest_tokens = 0.0, [], []
        for item in items:
            prompts, _ = reranker.encode(item["query"], item["docs"])
            common = min(len(os.path.commonprefix(prompts)), min(len(p) for p in prompts) - 1)
            prefix_tokens.append(common)
            rest_tokens.extend(len(p) - common for p in prompts)
            scores = {}
            for _ in range(args.repeats):
                for share in (True, False):  # interleaved
                    reranker.config.share_prefix = share
                    start = time.perf_counter()
                    result = reranker.rank(item["query"], item["docs"])
                    times[share].append(time.perf_counter() - start)
                    scores[share] = np.array([r.score for r in sorted(result, key=lambda r: r.index)])
            max_diff = max(max_diff, float(np.max(np.abs(scores[True] - scores[False]))))
        n = args.candidates
        p, d = statistics.mean(prefix_tokens), statistics.mean(rest_tokens)
        per_query = {share: statistics.median(t) for share, t in times.items()}
        entry = {
            "pairs_per_s_shared": n / per_query[True],
            "pairs_per_s_whole": n / per_query[False],
            "speedup": per_query[False] / per_query[True],
            "predicted_speedup_from_tokens": (p + d) / (d + p / n),
            "prefix_tokens": p,
            "document_and_suffix_tokens": d,
            "max_score_difference": max_diff,
        }
        report["settings"][name] = entry
        rows.append((name, entry))
        reranker.close()
    report["load_after"] = os.getloadavg()[0]
    print(f"\nllm-yes-no prefix sharing, SmolLM2-135M, {args.queries} queries x {args.candidates} candidates x "
          f"~{args.doc_tokens} tokens, median of {args.repeats} (load {report['load_before']:.1f} -> {report['load_after']:.1f})")
    print(f"{'setting':<10} {'prefix':>6} {'doc+sfx':>7} {'pairs/s whole':>13} {'pairs/s shared':>14} {'speedup':>7} "
          f"{'token bound':>11} {'max |diff|':>10}")
    for name, e in rows:
        print(f"{name:<10} {e['prefix_tokens']:>6.0f} {e['document_and_suffix_tokens']:>7.0f} {e['pairs_per_s_whole']:>13.2f} "
              f"{e['pairs_per_s_shared']:>14.2f} {e['speedup']:>6.2f}x {e['predicted_speedup_from_tokens']:>10.2f}x "
              f"{e['max_score_difference']:>10.1e}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
