"""`rankbridge search`: query the Qdrant hybrid store, optionally reranking the hits."""

from __future__ import annotations

import argparse
import json

from rankbridge.integrations.cli._store import add_store_arguments, check_reranker_specs, open_retriever, positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("search", help="search the store")
    p.add_argument("query", help="the query text")
    p.add_argument("--limit", type=positive_int, default=10, help="results to print (default 10)")
    p.add_argument("--mode", choices=["hybrid", "dense", "sparse"], default="hybrid")
    p.add_argument("--reranker", default=None, help="rerank the hits with this spec, e.g. lexical or cross-encoder:minilm-l6-ce-weak")
    p.add_argument("--depth", type=positive_int, default=100, help="first-stage hits handed to the reranker (default 100)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_store_arguments(p)
    p.set_defaults(func=cmd_search)


def cmd_search(args: argparse.Namespace) -> int:
    if args.reranker:
        check_reranker_specs([args.reranker])
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
