"""`lexical` with candidate-only IDF vs corpus statistics, reranking the SciFact hybrid top 100.

    python benchmarks/lexical_corpus.py --queries 300 --json lexical_corpus.json
    python benchmarks/lexical_corpus.py --queries 30          # a quick look

Rows: the hybrid RRF first stage; hybrid + `lexical` over the top `--depth` with IDF from the
candidates only (the default); the same with `corpus: <the BEIR folder>` (IDF and average length
of the whole corpus, i.e. bm25s-over-the-corpus scores); that one fused with the first stage at
0.5; and, for reference, bm25s over the whole corpus as a first stage of its own. Each row's
paired difference against the hybrid first stage comes with a 95% bootstrap interval (10,000
resamples over queries). Uses the demo's store ($RANKBRIDGE_CACHE_DIR/stores/scifact), indexing it
first if needed (a one-off, timed separately). Prints tables and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from rankbridge.integrations.evaluation.beir import load_beir
from rankbridge.integrations.evaluation.metrics import Configuration, evaluate, evaluate_configurations
from rankbridge.integrations.first_stage.qdrant import HybridRetriever
from rankbridge.integrations.training import BM25Corpus
from rankbridge.rerankers import load_reranker
from rankbridge.rerankers.core.paths import cache_dir, data_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--beir", type=Path, default=None, help="BEIR folder (default $RANKBRIDGE_DATA_DIR/beir/scifact)")
    parser.add_argument("--queries", type=int, default=300, help="seeded sample of test queries (default 300 = all of SciFact)")
    parser.add_argument("--depth", type=int, default=100, help="hybrid candidates reranked (default 100)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--store", type=Path, default=None, help="store folder (default: the demo's)")
    parser.add_argument("--json", type=Path, default=Path("lexical_corpus.json"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    for handler in logging.getLogger().handlers:
        handler.setLevel(logging.WARNING)  # bm25s sets its own logger to DEBUG on import

    folder = args.beir or data_dir() / "beir" / "scifact"
    dataset = load_beir(folder)
    queries = dataset.eval_queries(sample=args.queries, seed=args.seed)
    judged = {q: dataset.qrels[q] for q in queries}
    timings: dict[str, float] = {}

    retriever = HybridRetriever(path=args.store or cache_dir("stores", dataset.name))
    try:
        start = time.perf_counter()
        if retriever.count() != len(dataset.corpus):
            print(f"indexing {len(dataset.corpus)} documents into {retriever!r} (one-off)", file=sys.stderr)
            retriever.index(dataset.documents())
        timings["index_s"] = time.perf_counter() - start

        start = time.perf_counter()
        candidate_only = load_reranker({"backend": "lexical"})
        with_corpus = load_reranker({"backend": "lexical", "corpus": str(folder)})
        fused = load_reranker({"backend": "lexical", "corpus": str(folder), "fuse_first_stage": 0.5})
        timings["corpus_statistics_s"] = time.perf_counter() - start
        rerankers = {
            "lexical (candidate-only IDF)": candidate_only,
            "lexical (corpus statistics)": with_corpus,
            "lexical (corpus statistics), fuse 0.5": fused,
        }
        configs = [Configuration("hybrid")] + [Configuration("hybrid", name, args.depth) for name in rerankers]
        start = time.perf_counter()
        report = evaluate_configurations(
            retriever, queries, dataset.qrels, configs, limit=100, rerankers=rerankers,
            dataset=dataset.name, show_progress=False,
        )
        timings["evaluate_s"] = time.perf_counter() - start
    finally:
        retriever.close()

    start = time.perf_counter()
    bm25 = BM25Corpus(dataset.corpus)
    run = dict(zip(queries, bm25.search_many(list(queries.values()), limit=100)))
    reference = "bm25s over the corpus (a first stage of its own)"
    report.add(reference, evaluate(run, judged, per_query=True)["per_query"])
    report.compare(reference, "hybrid")
    timings["bm25s_corpus_s"] = time.perf_counter() - start

    print(f"{dataset.name} test: {len(queries)} queries, hybrid RRF top 100, lexical reranks the top {args.depth}")
    print(report.table())
    print()
    print(report.comparison_table())
    print()
    print("timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    data = report.to_dict()
    data.update({"depth": args.depth, "seed": args.seed, "timings": timings})
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(data, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
