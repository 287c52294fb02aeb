"""`rankbridge demo`: the README's main job.

Index SciFact once (cached), retrieve the hybrid top 100 for a sample of test queries, rerank the
top `depth` with `minilm-l6-ce-scifact` (a MiniLM-L6 cross-encoder trained by `rankbridge train` on
SciFact train only) on ONNX Runtime, fused with the first stage at `fuse_first_stage: 0.5` in
`fusion_mode: relative_score` (both chosen on a validation split of SciFact train, never on test),
and print first stage vs reranked (nDCG@10, MRR@10, Recall@100) with the lift's paired bootstrap
interval over the queries. When that model is not there, the output says which model reranked
instead. The defaults (30 queries, depth 30: 900 cross-encoder pairs) keep the reranking within a
minute on 2 CPU cores, indexing aside.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rankbridge.rerankers.core.errors import ConfigError, MissingDependencyError
from rankbridge.rerankers.core.paths import MODEL_DIR_ENV, data_dir

from rankbridge.integrations.cli._store import add_store_arguments, ensure_indexed, open_retriever, positive_int

logger = logging.getLogger(__name__)

TRAINED_MODEL = "minilm-l6-ce-scifact"
WEAK_MODEL = "minilm-l6-ce-weak"
FUSE_FIRST_STAGE = 0.5  # chosen before looking at test (the model's README); never tuned on test
# Both scores min-max scaled over the list: chosen with the weight on 150 held-out SciFact train
# queries (README, "Training a reranker"), never on test.
FUSION_MODE = "relative_score"
DEFAULT_DEPTH = 30
FALLBACK_RERANKER = "lexical"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo", help="index SciFact (cached), hybrid top 100, rerank, print first stage vs reranked with the lift's interval"
    )
    p.add_argument("--beir", type=Path, default=None, help="BEIR folder (default: $RANKBRIDGE_DATA_DIR/beir/scifact)")
    p.add_argument("--reranker", default=None,
                   help=f"reranker spec or config file (default: cross-encoder {TRAINED_MODEL} on ONNX Runtime, "
                        f"fuse_first_stage {FUSE_FIRST_STAGE}, fusion_mode {FUSION_MODE}; else {WEAK_MODEL}; else {FALLBACK_RERANKER})")
    p.add_argument("--queries", type=positive_int, default=30, help="seeded random sample of test queries (default 30)")
    p.add_argument("--depth", type=positive_int, default=DEFAULT_DEPTH,
                   help=f"hybrid candidates reranked per query (default {DEFAULT_DEPTH})")
    p.add_argument("--seed", type=int, default=0)
    add_store_arguments(p, default_store="<the BEIR folder's name, e.g. scifact>")
    p.set_defaults(func=cmd_demo)


def model_folders(model_dir: str | os.PathLike | None = None) -> list[Path]:
    """Where the demo looks for its models: `model_dir` if given, else $RANKBRIDGE_MODEL_DIR if
    set, else `../shared/models` beside the data folder."""
    if model_dir is not None:
        return [Path(model_dir)]
    if os.environ.get(MODEL_DIR_ENV):
        return [Path(os.environ[MODEL_DIR_ENV])]
    return [data_dir().parent / "models"]


@dataclass
class DemoChoice:
    """Which reranker the demo uses and why.

    Attributes:
        label: the reranker's name on the output (the model's, or the spec).
        details: how it runs ("onnx, fuse_first_stage 0.5, relative_score"; "" when given as a spec).
        spec: the config `load_reranker` builds.
        model: the model folder's name (None for `lexical`).
        note: what the output says when this is not the trained model (None when it is).
    """

    label: str
    spec: Any
    model: str | None
    note: str | None = None
    details: str = ""

    def describe(self, extra: str = "") -> str:
        parts = ", ".join(p for p in (self.details, extra) if p)
        return f"{self.label} ({parts})" if parts else self.label

    @property
    def trained(self) -> bool:
        return self.model == TRAINED_MODEL


def choose_demo_reranker(spec: str | None = None, model_dir: str | os.PathLike | None = None) -> DemoChoice:
    """`spec` as given; else the trained SciFact model on ONNX fused at 0.5 (relative_score); else,
    saying so, the weak test model the same way; else, saying so, `lexical`. Loads nothing."""
    if spec:
        return DemoChoice(label=str(spec), spec=spec, model=None)
    folders = model_folders(model_dir)
    where = ", ".join(str(f) for f in folders)

    def find(name: str) -> Path | None:
        return next((f / name for f in folders if (f / name / "config.json").is_file()), None)

    def cross_encoder(path: Path) -> dict[str, Any]:
        # ONNX Runtime float32: ranks exactly like torch (scores within 2e-5)
        return {"backend": "cross-encoder", "model": str(path), "runtime": "onnx",
                "fuse_first_stage": FUSE_FIRST_STAGE, "fusion_mode": FUSION_MODE}

    details = f"onnx, fuse_first_stage {FUSE_FIRST_STAGE}, {FUSION_MODE}"
    trained = find(TRAINED_MODEL)
    if trained is not None:
        return DemoChoice(label=TRAINED_MODEL, details=details, spec=cross_encoder(trained), model=TRAINED_MODEL)
    weak = find(WEAK_MODEL)
    if weak is not None:
        return DemoChoice(
            label=WEAK_MODEL, details=details, spec=cross_encoder(weak), model=WEAK_MODEL,
            note=f"the trained model {TRAINED_MODEL} is not in {where}: reranking with {WEAK_MODEL} instead, "
                 "a deliberately WEAK test model (expect no lift)",
        )
    return DemoChoice(
        label=FALLBACK_RERANKER, spec=FALLBACK_RERANKER, model=None,
        note=f"neither {TRAINED_MODEL} nor {WEAK_MODEL} is in {where}: reranking with {FALLBACK_RERANKER} "
             "(BM25 over the candidates) instead",
    )


def load_demo_reranker(spec: str | None = None, model_dir: str | os.PathLike | None = None) -> tuple[DemoChoice, Any]:
    """`choose_demo_reranker`, built; a cross-encoder that cannot be built (a missing extra)
    falls back to `lexical`, said in the choice's note, never silently."""
    from rankbridge.rerankers import load_reranker

    choice = choose_demo_reranker(spec, model_dir)
    if spec or choice.model is None:
        return choice, load_reranker(choice.spec)
    try:
        return choice, load_reranker(choice.spec)
    except (ConfigError, MissingDependencyError) as exc:
        fallback = DemoChoice(
            label=FALLBACK_RERANKER, spec=FALLBACK_RERANKER, model=None,
            note=f"the cross-encoder {choice.model} cannot be loaded ({exc}): reranking with {FALLBACK_RERANKER} instead",
        )
        return fallback, load_reranker(FALLBACK_RERANKER)


def cmd_demo(args: argparse.Namespace) -> int:
    from rankbridge.integrations.evaluation.beir import load_beir
    from rankbridge.integrations.evaluation.metrics import evaluate, rerank_run
    from rankbridge.integrations.evaluation.stats import compare_per_query

    started = time.perf_counter()
    folder = args.beir or data_dir() / "beir" / "scifact"
    dataset = load_beir(folder)
    queries = dataset.eval_queries(sample=args.queries, seed=args.seed)
    choice, reranker = load_demo_reranker(args.reranker)
    if choice.note:
        print(f"note: {choice.note}")
    print(
        f"{dataset.name}: {len(dataset.corpus)} documents; {len(queries)} of {len(dataset.qrels)} test queries "
        f"(seeded sample, seed {args.seed}); hybrid RRF top 100; {choice.describe()} reranks the top {args.depth}"
    )
    with open_retriever(args, default_store=dataset.name) as retriever:
        ensure_indexed(retriever, dataset)
        indexed = time.perf_counter()
        hits = retriever.search_many(list(queries.values()), limit=100, mode="hybrid")
    first = dict(zip(queries, hits))
    reranked = rerank_run(reranker, queries, first, depth=args.depth)
    judged = {q: dataset.qrels[q] for q in queries}
    first_name, reranked_name = "first stage (hybrid RRF)", f"reranked {choice.describe(f'top {args.depth}')}"
    rows = {first_name: evaluate(first, judged, per_query=True), reranked_name: evaluate(reranked, judged, per_query=True)}
    width = max(len(name) for name in rows)
    print()
    print(f"{'':<{width}}  {'nDCG@10':>8}  {'MRR@10':>8}  {'Recall@100':>10}")
    for name, m in rows.items():
        print(f"{name:<{width}}  {m['ndcg@10']:>8.4f}  {m['mrr@10']:>8.4f}  {m['recall@100']:>10.4f}")
    print()
    lift = compare_per_query(rows[first_name]["per_query"], rows[reranked_name]["per_query"], ("ndcg@10", "mrr@10"))
    for line in closing_lines(lift, len(queries), args.depth, choice):
        print(line)
    total = time.perf_counter() - started
    print(f"took {total:.0f} s ({indexed - started:.0f} s loading and indexing, {total - (indexed - started):.0f} s searching and reranking)")
    return 0


def closing_lines(lift: dict[str, Any], queries: int, depth: int, choice: DemoChoice) -> list[str]:
    """What the demo ends with: the lift, its interval, and whether it is outside the noise."""
    from rankbridge.integrations.evaluation.stats import DEFAULT_RESAMPLES

    d, m = lift["ndcg@10"], lift["mrr@10"]
    lines = [
        f"lift in nDCG@10: {d.mean:+.4f} (95% CI {d.low:+.4f} to {d.high:+.4f}), MRR@10: {m.mean:+.4f} "
        f"(95% CI {m.low:+.4f} to {m.high:+.4f}); paired bootstrap over the {queries} queries, {DEFAULT_RESAMPLES:,} resamples.",
        f"nDCG@10 per query: {d.wins} better, {d.ties} equal, {d.losses} worse.",
    ]
    if d.excludes_zero:
        direction = "a lift" if d.mean > 0 else "a loss"
        lines.append(f"The nDCG@10 interval excludes 0: on these {queries} queries this is {direction} outside the noise.")
    else:
        lines.append(
            f"The nDCG@10 interval includes 0: on {queries} queries this difference cannot be told from noise "
            "(more queries narrow it: --queries 300 is all of SciFact test)."
        )
    lines.append(f"Reranking reorders only the top {depth}, so Recall@100 is the first stage's.")
    if choice.model == WEAK_MODEL:
        lines.append(f"{WEAK_MODEL} is a deliberately weak test model: this table shows the pipeline, not a quality lift.")
    if choice.note:
        lines.append(f"note: {choice.note}")
    if choice.trained:
        lines.append(
            f"{TRAINED_MODEL} is trained on SciFact train only: an in-domain model. On other domains measure "
            "before relying on it (`rankbridge eval`); fused, it costs little there, alone it can cost more."
        )
    return lines
