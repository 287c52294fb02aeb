"""`rankbridge eval`: nDCG@10, MRR@10, Recall@100 per first stage and reranker on a BEIR dataset."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rankbridge.integrations.cli._store import (
    add_store_arguments,
    check_output_file,
    check_reranker_specs,
    ensure_indexed,
    open_retriever,
    positive_int,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("eval", help="nDCG@10, MRR@10, Recall@100 on a BEIR dataset, per configuration")
    p.add_argument("--beir", type=Path, required=True, help="BEIR folder")
    p.add_argument("--split", default="test", help="qrels split (default test)")
    p.add_argument("--first-stage", nargs="+", choices=["hybrid", "dense", "sparse"], default=["hybrid"], help="first stages to compare")
    p.add_argument("--reranker", action="append", default=[], help="reranker spec applied on each first stage (repeatable)")
    p.add_argument("--depth", type=positive_int, default=100, help="candidates reranked per query (default 100)")
    p.add_argument("--limit", type=positive_int, default=100, help="first-stage candidates per query (default 100)")
    p.add_argument("--queries", type=positive_int, default=None, help="evaluate a seeded random sample of this many queries")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None,
                   help="write the metrics as JSON here: means, per-query metrics of every configuration, the intervals")
    p.add_argument("--plot", type=Path, default=None, help="write a bar chart PNG here")
    p.add_argument("--plot-differences", type=Path, default=None,
                   help="write a PNG of each reranked configuration's per-query nDCG@10 differences vs its first stage, sorted")
    p.add_argument("--resamples", type=positive_int, default=10_000, help="bootstrap resamples over queries (default 10000)")
    p.add_argument("--bootstrap-seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    add_store_arguments(p)
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from rankbridge.integrations.evaluation.beir import load_beir
    from rankbridge.integrations.evaluation.metrics import Configuration, evaluate_configurations, plot_differences, plot_report

    # everything that can be checked is checked before the (long) evaluation runs
    check_output_file(args.json, "--json")
    check_output_file(args.plot, "--plot")
    check_output_file(args.plot_differences, "--plot-differences")
    check_reranker_specs(args.reranker)
    dataset = load_beir(args.beir, split=args.split)
    queries = dataset.eval_queries(sample=args.queries, seed=args.seed)
    configs = [Configuration(stage) for stage in args.first_stage]
    configs += [Configuration(stage, spec, args.depth) for stage in args.first_stage for spec in args.reranker]
    with open_retriever(args) as retriever:
        ensure_indexed(retriever, dataset)
        report = evaluate_configurations(
            retriever, queries, dataset.qrels, configs, limit=args.limit, dataset=dataset.name,
            resamples=args.resamples, seed=args.bootstrap_seed,
        )
    sample = f"a seeded sample of {len(queries)}" if args.queries else f"all {len(queries)}"
    print(f"{dataset.name} ({dataset.split}): {sample} judged queries, first stage top {args.limit}, rerank depth {args.depth}")
    print(report.table())
    if report.comparisons:
        print()
        print(report.comparison_table())
    if args.json:
        args.json.write_text(json.dumps(report.to_dict(), indent=2))
        print(f"metrics written to {args.json}")
    if args.plot:
        plot_report(report, str(args.plot))
        print(f"bar chart written to {args.plot}")
    if args.plot_differences:
        if not report.comparisons:
            print("no reranked configuration: no per-query differences to plot")
        else:
            plot_differences(report, str(args.plot_differences))
            print(f"per-query differences written to {args.plot_differences}")
    return 0
