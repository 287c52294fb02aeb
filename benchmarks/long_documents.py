"""Long documents on a validation split: truncate vs `max_chunk` vs a longer window, chosen before test.

    python benchmarks/long_documents.py --model runs/scifact-ce-val150 --store runs/store --json long_documents.json
    python benchmarks/long_documents.py --model runs/scifact-ce-val150 --store runs/store --variants truncate@256,max_chunk@256

The validation split is the one `rankbridge train --validation-queries 150` holds out of SciFact
train before training (pass the training's `--seed`, default 13, and `--min-positive-grade`), so
`--model` must be a model trained with it (the README's `runs/scifact-ce-val150`): the queries are
ones it never saw, and nothing here looks at test. Each variant reranks the hybrid top `--depth`
of those queries with the model on ONNX (scores cached on disk), fused with the first stage at
every weight 0, 0.1, ..., 1 in `relevance` and `relative_score` modes. Prints the validation
nDCG@10 curves, then each variant's paired difference (95% bootstrap interval over the queries,
10,000 resamples) against the first variant (by default truncating at 256 tokens, the length the
model trained at), at `relative_score` 0.5 and alone; writes JSON (curves, per-query nDCG@10, load,
seconds). Pass the store `rankbridge train --store` used (the same first stage; indexed first if empty).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

from rankbridge.integrations.cli._store import add_store_arguments, ensure_indexed, open_retriever
from rankbridge.integrations.cli.train import _ModeFirstStage
from rankbridge.integrations.evaluation.beir import load_beir
from rankbridge.integrations.evaluation.stats import paired_bootstrap
from rankbridge.integrations.training import split_validation
from rankbridge.integrations.training.validation import DEFAULT_WEIGHTS, ValidationSet, fused_ndcg_per_query
from rankbridge.rerankers import load_reranker
from rankbridge.rerankers.core.paths import data_dir

logger = logging.getLogger("benchmarks.long_documents")

MODES = ("relevance", "relative_score")


def parse_variant(text: str) -> dict:
    """`truncate@256`, `max_chunk@256`, `truncate@512`: long_documents mode @ max_length."""
    mode, _, length = text.partition("@")
    if mode not in ("truncate", "max_chunk") or not length.isdigit():
        raise argparse.ArgumentTypeError(f"a variant is MODE@LENGTH with MODE truncate or max_chunk, got {text!r}")
    return {"long_documents": mode, "max_length": int(length)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="a model trained with --validation-queries N (seed --seed)")
    p.add_argument("--beir", type=Path, default=data_dir() / "beir" / "scifact")
    p.add_argument("--validation-queries", type=int, default=150)
    p.add_argument("--seed", type=int, default=13, help="rankbridge train's --seed (its default 13)")
    p.add_argument("--min-positive-grade", type=int, default=1, help="rankbridge train's --min-positive-grade")
    p.add_argument("--depth", type=int, default=100)
    p.add_argument("--variants", default="truncate@256,max_chunk@256,truncate@512")
    p.add_argument("--json", type=Path, default=None)
    add_store_arguments(p, default_store="scifact")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    variants = {name: parse_variant(name) for name in args.variants.split(",")}

    dataset = load_beir(str(args.beir), split="train")
    _, val_qrels = split_validation(dataset.qrels, args.validation_queries, seed=args.seed,
                                   min_positive_grade=args.min_positive_grade)
    retriever = open_retriever(args, default_store=dataset.name)
    try:
        ensure_indexed(retriever, dataset)
        validation = ValidationSet.build(_ModeFirstStage(retriever, "hybrid"), dataset.corpus, dataset.queries,
                                         val_qrels, depth=args.depth)
    finally:
        retriever.close()
    first = validation.first_stage_metrics(per_query=True)
    report: dict = {"model": os.path.basename(os.path.normpath(args.model)), "queries": len(validation.queries),
                    "depth": args.depth, "load_before": os.getloadavg(), "first_stage": first["ndcg@10"],
                    "curves": {}, "seconds": {},
                    "per_query": {"first_stage": {q: r["ndcg@10"] for q, r in first["per_query"].items()}}}
    print(f"validation: {len(validation.queries)} held-out training queries; first stage nDCG@10 {first['ndcg@10']:.4f}")
    qids = sorted(first["per_query"])
    for name, fields in variants.items():
        reranker = load_reranker({"backend": "cross-encoder", "model": args.model, "runtime": "onnx",
                                  "cache": "disk", **fields})
        started = time.perf_counter()
        per_query = fused_ndcg_per_query(reranker, validation, args.depth, DEFAULT_WEIGHTS, MODES, show_progress=True)
        for mode, by_weight in per_query.items():
            curve = {}
            for w, rows in by_weight.items():
                curve[str(w)] = sum(rows[q] for q in qids) / len(qids)
                report["per_query"][f"{name}/{mode}/{w}"] = rows
            report["curves"][f"{name}/{mode}"] = curve
            print(f"{name:<15} {mode:<15} " + " ".join(f"{v:.4f}" for v in curve.values()))
        report["seconds"][name] = time.perf_counter() - started
    report["load_after"] = os.getloadavg()

    base = next(iter(variants))
    print(f"\npaired nDCG@10 difference vs {base} (95% bootstrap CI, 10,000 resamples)")
    report["differences"] = {}
    for name in variants:
        for label, key in (("relative_score 0.5", "relative_score/0.5"), ("alone", "relevance/1.0")):
            ref = report["per_query"][f"{base}/{key}"]
            row = report["per_query"][f"{name}/{key}"]
            d = paired_bootstrap([ref[q] for q in qids], [row[q] for q in qids])
            report["differences"][f"{name}/{key}"] = d.to_dict()
            print(f"{name:<15} {label:<19} {d.mean:+.4f} [{d.low:+.4f}, {d.high:+.4f}] {d.wins}/{d.ties}/{d.losses}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
        logger.info("written to %s", args.json)


if __name__ == "__main__":
    main()
