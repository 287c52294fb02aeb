"""Scanned-page reranking: `ocr-page` on degraded SciFact pages against the same reranker on clean text.

Measures, on the set `build_scanned_scifact.py` writes (built here if missing):

1. Quality: nDCG@10 of `ocr-page` + `--inner` (default the MiniLM-L6 cross-encoder) over the page
   images, and of `--inner` over the clean text of the same documents (title + abstract), on the
   same candidate lists; also the BM25 first-stage order. Target: |OCR - clean| <= 0.03.
   The difference comes with a paired bootstrap 95% interval over queries.
2. Speed, separately: OCR pages/s (cold cache) and scoring pages/s (inner reranker on OCR text).
3. Cache: a first rerank of a page subset with an empty cache (OCR + scoring) against a second
   rerank of the same pages by the same reranker (memory cache) and by a new reranker on the same
   disk cache. Target: second < 10% of first. Repeated `--repeats` times, cold and warm
   interleaved, so load from other processes falls on both alike.

The quality run reads OCR text through the persistent cache ($RANKBRIDGE_CACHE_DIR/ocr), so it is
cheap after the first time; the speed runs use fresh temporary caches.

    python benchmarks/pages.py --queries 20 --candidates 5 --json benchmarks/pages_results.json

Prints a table and writes JSON (with `uptime` load before and after).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from build_scanned_scifact import default_out  # noqa: E402
from build_scanned_scifact import main as build_main  # noqa: E402

from rankbridge.integrations.evaluation.metrics import evaluate  # noqa: E402
from rankbridge.rerankers import Candidate, load_reranker  # noqa: E402

logger = logging.getLogger("pages-benchmark")


def load_set(folder: Path):
    corpus = {}
    with open(folder / "corpus.jsonl", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            corpus[row["_id"]] = row
    queries = {}
    with open(folder / "queries.jsonl", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            queries[row["_id"]] = row["text"]
    qrels: dict[str, dict[str, int]] = {}
    candidates: dict[str, list[tuple[str, float]]] = {}
    for name, target in (("qrels/test.tsv", qrels), ("candidates.tsv", candidates)):
        with open(folder / name, encoding="utf-8") as handle:
            next(handle)
            for line in handle:
                qid, did, score = line.rstrip("\n").split("\t")
                if target is qrels:
                    qrels.setdefault(qid, {})[did] = int(score)
                else:
                    candidates.setdefault(qid, []).append((did, float(score)))
    return corpus, queries, qrels, candidates


def uptime() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def page_candidates(folder: Path, corpus: dict, listed: list[tuple[str, float]]) -> list[Candidate]:
    return [Candidate(image=str(folder / corpus[d]["image_path"]), id=d, score=s) for d, s in listed]


def text_candidates(corpus: dict, listed: list[tuple[str, float]]) -> list[Candidate]:
    return [Candidate(text=f"{corpus[d]['title']}\n{corpus[d]['text']}", id=d, score=s) for d, s in listed]


def rank_all(reranker, queries: dict, lists: dict) -> dict[str, list]:
    qids = list(lists)
    results = reranker.rank_many([queries[q] for q in qids], [lists[q] for q in qids])
    return {q: r.ids for q, r in zip(qids, results)}


def paired_bootstrap(a: dict[str, float], b: dict[str, float], samples: int = 10_000, seed: int = 0):
    qids = sorted(a)
    diff = np.array([a[q] - b[q] for q in qids])
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(samples, len(diff)))].mean(axis=1)
    return float(diff.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def quality(args, folder, corpus, queries, qrels, candidates) -> dict:
    page_lists = {q: page_candidates(folder, corpus, listed) for q, listed in candidates.items()}
    text_lists = {q: text_candidates(corpus, listed) for q, listed in candidates.items()}
    inner = load_reranker(args.inner)
    ocr = load_reranker({"backend": "ocr-page", "inner": args.inner, "num_threads": args.ocr_threads})
    started = time.perf_counter()
    ocr_run = rank_all(ocr, queries, page_lists)
    ocr_seconds = time.perf_counter() - started
    clean_run = rank_all(inner, queries, text_lists)
    # Ablation: the same OCR text (from the cache) without restoring dropped spaces.
    raw_ocr = load_reranker({"backend": "ocr-page", "inner": args.inner, "restore_spaces": False, "show_progress_bar": False})
    raw_run = rank_all(raw_ocr, queries, page_lists)
    first_stage = {q: [d for d, _ in listed] for q, listed in candidates.items()}
    scores = {
        name: evaluate(run, qrels, per_query=True)
        for name, run in (
            ("ocr-page", ocr_run),
            ("ocr-page, spaces not restored", raw_run),
            ("clean text", clean_run),
            ("bm25 first stage", first_stage),
        )
    }
    per_query = {name: {q: m["ndcg@10"] for q, m in s["per_query"].items()} for name, s in scores.items()}
    diff, low, high = paired_bootstrap(per_query["ocr-page"], per_query["clean text"])
    changed = sum(1 for q in per_query["ocr-page"] if abs(per_query["ocr-page"][q] - per_query["clean text"][q]) > 1e-9)
    return {
        "ndcg@10": {name: s["ndcg@10"] for name, s in scores.items()},
        "mrr@10": {name: s["mrr@10"] for name, s in scores.items()},
        "ocr_minus_clean": diff,
        "ocr_minus_clean_ci95": [low, high],
        "queries_with_different_ndcg": changed,
        "queries": len(queries),
        "pages": sum(len(v) for v in candidates.values()),
        "quality_run_seconds": ocr_seconds,
        "ocr_cache": vars(ocr.ocr.stats),
        "per_query_ndcg@10": per_query,
    }


def speed(args, folder, corpus, queries, candidates) -> dict:
    """Cold and warm reranks of a page subset, interleaved; OCR and scoring timed apart."""
    rng = random.Random(args.seed)
    qids = sorted(candidates)
    subset = rng.sample(qids, min(args.speed_queries, len(qids)))
    page_lists = {q: page_candidates(folder, corpus, candidates[q]) for q in subset}
    pages = sum(len(v) for v in page_lists.values())
    rows = []
    for rep in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="ocr-cache-") as cache:
            spec = {"backend": "ocr-page", "inner": args.inner, "cache_dir": cache, "num_threads": args.ocr_threads, "show_progress_bar": False}
            reranker = load_reranker(spec)
            reranker.inner.rank("warm up", ["load the model weights before timing"])
            t0 = time.perf_counter()
            rank_all(reranker, queries, page_lists)
            first = time.perf_counter() - t0
            ocr_seconds = reranker.ocr.stats.ocr_seconds
            misses = reranker.ocr.stats.misses
            t0 = time.perf_counter()
            rank_all(reranker, queries, page_lists)
            second = time.perf_counter() - t0
            # Scoring alone: the inner reranker on the (cached) OCR text.
            texts = {q: [Candidate(text=t) for t in reranker.ocr_texts(c)] for q, c in page_lists.items()}
            t0 = time.perf_counter()
            rank_all(reranker.inner, queries, texts)
            scoring = time.perf_counter() - t0
            fresh = load_reranker(spec)
            fresh.inner.rank("warm up", ["load the model weights before timing"])
            t0 = time.perf_counter()
            rank_all(fresh, queries, page_lists)
            from_disk = time.perf_counter() - t0
            rows.append(
                {
                    "repeat": rep,
                    "pages": pages,
                    "ocr_misses": misses,
                    "first_rerank_s": first,
                    "second_rerank_s": second,
                    "new_process_disk_cache_s": from_disk,
                    "ocr_s": ocr_seconds,
                    "scoring_s": scoring,
                    "second_over_first": second / first,
                    "disk_over_first": from_disk / first,
                    "ocr_pages_per_s": misses / ocr_seconds if ocr_seconds else float("nan"),
                    "scoring_pages_per_s": pages / scoring,
                    "disk_hits": fresh.ocr.stats.disk_hits,
                }
            )
            logger.info("repeat %d: %s", rep, rows[-1])
    summary = {
        key: statistics.median(r[key] for r in rows)
        for key in ("first_rerank_s", "second_rerank_s", "new_process_disk_cache_s", "second_over_first", "disk_over_first", "ocr_pages_per_s", "scoring_pages_per_s")
    }
    return {"subset_queries": subset, "pages": pages, "repeats": rows, "median": summary}


def print_table(report: dict) -> None:
    q = report.get("quality")
    if q:
        print(f"\nQuality on {q['queries']} queries / {q['pages']} degraded pages (inner: {report['inner']})")
        print(f"{'ranking':<32}{'nDCG@10':>10}{'MRR@10':>10}")
        for name, value in q["ndcg@10"].items():
            print(f"{name:<32}{value:>10.4f}{q['mrr@10'][name]:>10.4f}")
        low, high = q["ocr_minus_clean_ci95"]
        verdict = "PASS" if abs(q["ocr_minus_clean"]) <= 0.03 else "FAIL"
        print(f"ocr - clean nDCG@10: {q['ocr_minus_clean']:+.4f} (paired bootstrap 95% CI {low:+.4f} .. {high:+.4f}); target |diff| <= 0.03: {verdict}")
        print(f"queries whose nDCG@10 differs: {q['queries_with_different_ndcg']} of {q['queries']}")
    s = report.get("speed")
    if s:
        m = s["median"]
        print(f"\nSpeed on {s['pages']} pages, median of {len(s['repeats'])} repeats (load {report['load_before']} -> {report['load_after']})")
        print(f"{'measure':<40}{'value':>12}")
        rows = [
            ("OCR pages/s (cold)", f"{m['ocr_pages_per_s']:.3f}"),
            ("scoring pages/s (inner on OCR text)", f"{m['scoring_pages_per_s']:.1f}"),
            ("first rerank, empty cache (s)", f"{m['first_rerank_s']:.2f}"),
            ("second rerank, same reranker (s)", f"{m['second_rerank_s']:.3f}"),
            ("new reranker, disk cache (s)", f"{m['new_process_disk_cache_s']:.3f}"),
            ("second / first", f"{m['second_over_first']:.4f}"),
            ("disk-cache rerank / first", f"{m['disk_over_first']:.4f}"),
        ]
        for name, value in rows:
            print(f"{name:<40}{value:>12}")
        verdict = "PASS" if m["second_over_first"] < 0.10 else "FAIL"
        print(f"target second rerank < 10% of first: {verdict}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="the scanned set folder (default: built under $RANKBRIDGE_CACHE_DIR)")
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--candidates", type=int, default=5)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--limit-queries", type=int, default=None, help="use only the first N queries of the set (in candidates.tsv order)")
    parser.add_argument("--inner", default="cross-encoder:minilm-l6-ce-weak", help="text reranker spec")
    parser.add_argument("--ocr-threads", type=int, default=None)
    parser.add_argument("--speed-queries", type=int, default=1, help="queries whose pages the speed runs OCR from scratch")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--json", default="benchmarks/pages_results.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    folder = Path(args.data) if args.data else default_out(args.queries, args.candidates, args.seed)
    if not (folder / "corpus.jsonl").is_file():
        build_main(["--queries", str(args.queries), "--candidates", str(args.candidates), "--seed", str(args.seed), "--out", str(folder)])
    corpus, queries, qrels, candidates = load_set(folder)
    if args.limit_queries:
        keep = list(candidates)[: args.limit_queries]
        candidates = {q: candidates[q] for q in keep}
        queries = {q: queries[q] for q in keep}
        qrels = {q: qrels[q] for q in keep}
    report: dict = {"data": str(folder), "inner": args.inner, "load_before": uptime(), "args": vars(args)}
    if not args.skip_quality:
        report["quality"] = quality(args, folder, corpus, queries, qrels, candidates)
    if not args.skip_speed:
        report["speed"] = speed(args, folder, corpus, queries, candidates)
    report["load_after"] = uptime()
    print_table(report)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1), encoding="utf-8")
    print(f"\nwrote {out}")
    return report


if __name__ == "__main__":
    main()
