"""Retrieval evaluation: nDCG@10, MRR@10 and Recall@100 with pytrec_eval, per configuration.

A configuration is a first stage (hybrid, dense or sparse) optionally followed by a reranker
over its top `depth` candidates; below `depth` the first-stage order is kept. A reranked run
therefore holds the same top-100 documents as its first stage: Recall@100 cannot move, only
the order at the top (nDCG@10, MRR@10) can.

Example:
    >>> qrels = {"q1": {"d1": 1}}
    >>> evaluate({"q1": ["d2", "d1"]}, qrels)["mrr@10"]
    0.5
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rankbridge.rerankers.core.errors import require
from rankbridge.rerankers.core.types import Candidate

logger = logging.getLogger(__name__)

METRICS = ("ndcg@10", "mrr@10", "recall@100")
_EXTRA = "qdrant"


def evaluate(
    run: Mapping[str, Sequence[Any]],
    qrels: Mapping[str, Mapping[str, int]],
    per_query: bool = False,
) -> dict[str, Any]:
    """Mean nDCG@10, MRR@10 and Recall@100 of ranked lists.

    Args:
        run: query id -> document ids, best first (ranks, not scores: no tie ambiguity).
        qrels: query id -> {document id: grade}; grade > 0 is relevant.
        per_query: also return {"per_query": {qid: {metric: value}}}.

    Every query of `qrels` counts; one missing from `run` (or with an empty list) scores 0.
    MRR@10 is the reciprocal rank of the first relevant document within the top 10, else 0.
    """
    pytrec_eval = require("pytrec_eval", extra=_EXTRA, package="pytrec-eval-terrier")
    judged = {str(q): {str(d): int(g) for d, g in docs.items()} for q, docs in qrels.items()}
    scored = {str(q): _as_scores(run.get(q, ())) for q in judged}
    scored = {q: docs for q, docs in scored.items() if docs}
    top10 = {q: dict(list(docs.items())[:10]) for q, docs in scored.items()}
    full = pytrec_eval.RelevanceEvaluator(judged, {"ndcg_cut.10", "recall.100"}).evaluate(scored) if scored else {}
    short = pytrec_eval.RelevanceEvaluator(judged, {"recip_rank"}).evaluate(top10) if top10 else {}
    rows = {}
    for q in judged:
        rows[q] = {
            "ndcg@10": full.get(q, {}).get("ndcg_cut_10", 0.0),
            "mrr@10": short.get(q, {}).get("recip_rank", 0.0),
            "recall@100": full.get(q, {}).get("recall_100", 0.0),
        }
    out: dict[str, Any] = {m: float(np.mean([r[m] for r in rows.values()])) if rows else 0.0 for m in METRICS}
    out["queries"] = len(rows)
    if per_query:
        out["per_query"] = rows
    return out


def _as_scores(ranked: Sequence[Any]) -> dict[str, float]:
    scores: dict[str, float] = {}
    n = len(ranked)
    for rank, doc in enumerate(ranked):
        key = str(doc.id if isinstance(doc, Candidate) else doc)
        scores.setdefault(key, float(n - rank))  # a duplicate keeps its best rank
    return scores


def rerank_run(
    reranker: Any,
    queries: Mapping[str, str],
    candidates: Mapping[str, Sequence[Candidate]],
    depth: int,
    batch_queries: int = 8,
    show_progress: bool = True,
) -> dict[str, list[Candidate]]:
    """Rerank the top `depth` candidates of every query; the rest keep their first-stage order.

    Returns query id -> candidates, best first (the reranked head, then the untouched tail).
    """
    if depth < 1:
        raise ValueError(f"depth must be a positive int, got {depth!r}")
    qids = list(queries)
    out: dict[str, list[Candidate]] = {}
    progress = None
    if show_progress:
        from tqdm.auto import tqdm

        progress = tqdm(total=len(qids), desc=f"reranking top {depth}", unit="query")
    try:
        for start in range(0, len(qids), batch_queries):
            batch = qids[start : start + batch_queries]
            heads = [list(candidates[q][:depth]) for q in batch]
            ranked = reranker.rank_many([queries[q] for q in batch], heads)
            for q, result in zip(batch, ranked):
                out[q] = list(result.candidates) + list(candidates[q][depth:])
            if progress is not None:
                progress.update(len(batch))
    finally:
        if progress is not None:
            progress.close()
    return out


@dataclass
class Configuration:
    """One row of an evaluation: a first stage, optionally reranked."""

    first_stage: str
    reranker: str | None = None
    depth: int = 100

    @property
    def name(self) -> str:
        if self.reranker is None:
            return self.first_stage
        return f"{self.first_stage} + {self.reranker} @{self.depth}"


@dataclass
class EvaluationReport:
    """Metrics per configuration, with what was run."""

    dataset: str
    queries: int
    limit: int
    results: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def table(self) -> str:
        """A plain-text table: one row per configuration, one column per metric."""
        width = max([len("configuration")] + [len(n) for n in self.results])
        lines = [f"{'configuration':<{width}}  " + "  ".join(f"{m:>10}" for m in METRICS)]
        lines.append("-" * len(lines[0]))
        for name, metrics in self.results.items():
            lines.append(f"{name:<{width}}  " + "  ".join(f"{metrics[m]:>10.4f}" for m in METRICS))
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "queries": self.queries,
            "limit": self.limit,
            "metrics": list(METRICS),
            "results": self.results,
            "notes": self.notes,
        }


def evaluate_configurations(
    retriever: Any,
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    configurations: Sequence[Configuration],
    limit: int = 100,
    rerankers: Mapping[str, Any] | None = None,
    dataset: str = "",
    show_progress: bool = True,
) -> EvaluationReport:
    """Run each configuration over `queries` and score it against `qrels`.

    Args:
        retriever: a `HybridRetriever` (its `search_many` is called once per first stage).
        queries: query id -> text (only these are evaluated).
        qrels: judgments; restricted to `queries`.
        configurations: what to compare.
        limit: first-stage candidates per query (Recall@100 needs 100).
        rerankers: reranker spec -> built `Reranker` (specs not given are loaded with
            `load_reranker`).
    """
    from rankbridge.rerankers import load_reranker

    judged = {q: qrels[q] for q in queries if q in qrels}
    qids = list(queries)
    texts = [queries[q] for q in qids]
    built = dict(rerankers or {})
    first_runs: dict[str, dict[str, list[Candidate]]] = {}
    report = EvaluationReport(dataset=dataset, queries=len(judged), limit=limit)
    for config in configurations:
        if config.first_stage not in first_runs:
            hits = retriever.search_many(texts, limit=limit, mode=config.first_stage, show_progress=show_progress)
            first_runs[config.first_stage] = dict(zip(qids, hits))
        run = first_runs[config.first_stage]
        if config.reranker is not None:
            if config.reranker not in built:
                built[config.reranker] = load_reranker(config.reranker)
            run = rerank_run(built[config.reranker], queries, run, depth=config.depth, show_progress=show_progress)
        metrics = evaluate(run, judged)
        report.results[config.name] = {m: metrics[m] for m in METRICS}
        logger.info("%s: %s", config.name, report.results[config.name])
    return report


def plot_report(report: EvaluationReport, path: str) -> None:
    """A grouped bar chart (one group per metric, one bar per configuration) written as PNG."""
    matplotlib = require("matplotlib", extra=_EXTRA)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report.results)
    x = np.arange(len(METRICS))
    width = 0.8 / max(len(names), 1)
    fig, ax = plt.subplots(figsize=(2.2 + 1.6 * len(METRICS), 4))
    for i, name in enumerate(names):
        values = [report.results[name][m] for m in METRICS]
        bars = ax.bar(x + (i - (len(names) - 1) / 2) * width, values, width, label=name)
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.set_xticks(x, METRICS)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score")
    ax.set_title(f"{report.dataset}: {report.queries} queries, first stage top {report.limit}")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


__all__ = [
    "METRICS",
    "Configuration",
    "EvaluationReport",
    "evaluate",
    "evaluate_configurations",
    "plot_report",
    "rerank_run",
]
