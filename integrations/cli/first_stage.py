"""`rankbridge index | search | eval`: the Qdrant hybrid first stage from the command line."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from rankbridge.rerankers.core.paths import cache_dir

logger = logging.getLogger(__name__)


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    """--store / --collection / --url / --api-key, shared by every subcommand that opens a store."""
    group = parser.add_argument_group("store")
    group.add_argument("--store", type=Path, default=None, help="embedded store folder (default: $RANKBRIDGE_CACHE_DIR/stores/default)")
    group.add_argument("--collection", default="rankbridge", help="collection name (default: rankbridge)")
    group.add_argument("--url", default=None, help="a Qdrant server URL instead of the embedded store")
    group.add_argument("--api-key", default=None, help="the Qdrant server's API key")
    group.add_argument("--fusion", choices=["rrf", "dbsf"], default="rrf", help="hybrid fusion (default: rrf)")
    group.add_argument("--rrf-k", type=int, default=2, help="RRF constant (Qdrant's default: 2)")


def open_retriever(args: argparse.Namespace, default_store: str = "default"):
    from rankbridge.integrations.first_stage.qdrant import HybridRetriever

    path = args.store if args.store is not None else cache_dir("stores", default_store)
    return HybridRetriever(
        path=None if args.url else path,
        url=args.url,
        api_key=args.api_key,
        collection_name=args.collection,
        fusion=args.fusion,
        rrf_k=args.rrf_k,
    )


def ensure_indexed(retriever: Any, dataset: Any) -> None:
    """Index `dataset` unless the collection already holds exactly its documents (cached)."""
    have = retriever.count()
    if have == len(dataset.corpus):
        logger.info("collection already holds %d documents; not re-indexing", have)
        return
    if have:
        logger.warning("collection holds %d documents, the corpus %d: upserting the corpus", have, len(dataset.corpus))
    retriever.index(dataset.documents())


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("index", help="index a BEIR corpus into the store (idempotent)")
    p.add_argument("--beir", type=Path, required=True, help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/)")
    add_store_arguments(p)
    p.set_defaults(func=cmd_index)

    p = subparsers.add_parser("search", help="search the store")
    p.add_argument("query", help="the query text")
    p.add_argument("--limit", type=int, default=10, help="results to print (default 10)")
    p.add_argument("--mode", choices=["hybrid", "dense", "sparse"], default="hybrid")
    p.add_argument("--reranker", default=None, help="rerank the hits with this spec, e.g. lexical or cross-encoder:minilm-l6-ce-weak")
    p.add_argument("--depth", type=int, default=100, help="first-stage hits handed to the reranker (default 100)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_store_arguments(p)
    p.set_defaults(func=cmd_search)

    p = subparsers.add_parser("eval", help="nDCG@10, MRR@10, Recall@100 on a BEIR dataset, per configuration")
    p.add_argument("--beir", type=Path, required=True, help="BEIR folder")
    p.add_argument("--split", default="test", help="qrels split (default test)")
    p.add_argument("--first-stage", nargs="+", choices=["hybrid", "dense", "sparse"], default=["hybrid"], help="first stages to compare")
    p.add_argument("--reranker", action="append", default=[], help="reranker spec applied on each first stage (repeatable)")
    p.add_argument("--depth", type=int, default=100, help="candidates reranked per query (default 100)")
    p.add_argument("--limit", type=int, default=100, help="first-stage candidates per query (default 100)")
    p.add_argument("--queries", type=int, default=None, help="evaluate a seeded random sample of this many queries")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="write the metrics as JSON here")
    p.add_argument("--plot", type=Path, default=None, help="write a bar chart PNG here")
    add_store_arguments(p)
    p.set_defaults(func=cmd_eval)


def cmd_index(args: argparse.Namespace) -> int:
    from rankbridge.integrations.evaluation.beir import load_beir

    dataset = load_beir(args.beir)
    with open_retriever(args) as retriever:
        count = retriever.index(dataset.documents())
        print(f"indexed {count} documents from {args.beir} into collection {args.collection!r} ({retriever.count()} in store)")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    with open_retriever(args) as retriever:
        if retriever.count() == 0:
            print("the collection is empty; run `rankbridge index --beir DIR` first")
            return 1
        hits = retriever.search(args.query, limit=max(args.limit, args.depth if args.reranker else 0), mode=args.mode)
    rows = [(c.id, c.score, None, c.text) for c in hits]
    if args.reranker:
        from rankbridge.rerankers import load_reranker

        ranked = load_reranker(args.reranker).rank(args.query, hits[: args.depth])
        rows = [(r.id, r.candidate.score, r.relevance, r.text) for r in ranked]
    rows = rows[: args.limit]
    if args.json:
        print(json.dumps([{"id": i, "first_stage_score": s, "relevance": rel, "text": t} for i, s, rel, t in rows], indent=2))
        return 0
    for rank, (doc_id, score, relevance, text) in enumerate(rows, start=1):
        rel = "" if relevance is None else f"  relevance {relevance:.3f}"
        snippet = (text or "").replace("\n", " ")[:90]
        print(f"{rank:>3}. {str(doc_id):<12} first stage {score:.4f}{rel}  {snippet}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from rankbridge.integrations.evaluation.beir import load_beir
    from rankbridge.integrations.evaluation.metrics import Configuration, evaluate_configurations, plot_report

    dataset = load_beir(args.beir, split=args.split)
    queries = dataset.eval_queries(sample=args.queries, seed=args.seed)
    configs = [Configuration(stage) for stage in args.first_stage]
    configs += [Configuration(stage, spec, args.depth) for stage in args.first_stage for spec in args.reranker]
    with open_retriever(args) as retriever:
        ensure_indexed(retriever, dataset)
        report = evaluate_configurations(
            retriever, queries, dataset.qrels, configs, limit=args.limit, dataset=dataset.name
        )
    sample = f"a seeded sample of {len(queries)}" if args.queries else f"all {len(queries)}"
    print(f"{dataset.name} ({dataset.split}): {sample} judged queries, first stage top {args.limit}, rerank depth {args.depth}")
    print(report.table())
    if args.json:
        args.json.write_text(json.dumps(report.to_dict(), indent=2))
        print(f"metrics written to {args.json}")
    if args.plot:
        plot_report(report, str(args.plot))
        print(f"bar chart written to {args.plot}")
    return 0
