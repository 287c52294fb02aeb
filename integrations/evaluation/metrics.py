"""Retrieval evaluation: nDCG@10, MRR@10 and Recall@100 with pytrec_eval, per configuration.

A configuration is a first stage (hybrid, dense or sparse) optionally followed by a reranker
over its top `depth` candidates; below `depth` the first-stage order is kept. A reranked run
therefore holds the same top-100 documents as its first stage: Recall@100 cannot move, only
the order at the top (nDCG@10, MRR@10) can.

Every configuration keeps its per-query metrics; every reranked one is compared with its first
stage query by query (`stats.paired_bootstrap`: the mean difference, a seeded 95% bootstrap
interval over 10,000 resamples of the queries, wins / ties / losses), so a lift can be told from
noise. `EvaluationReport.to_dict` / `from_dict` carry all of it through JSON.

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

from rankbridge.integrations.evaluation.stats import (
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    PairedDifference,
    compare_per_query,
)
from rankbridge.rerankers.core.errors import require
from rankbridge.rerankers.core.types import Candidate

logger = logging.getLogger(__name__)

METRICS = ("ndcg@10", "mrr@10", "recall@100")
COMPARED_METRICS = ("ndcg@10", "mrr@10")  # printed; reordering the top 100 cannot move Recall@100
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
class Comparison:
    """A reranked configuration against its first stage: one `PairedDifference` per metric."""

    baseline: str
    differences: dict[str, PairedDifference]

    def to_dict(self) -> dict[str, Any]:
        return {"baseline": self.baseline, "metrics": {m: d.to_dict() for m, d in self.differences.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Comparison:
        return cls(
            baseline=data["baseline"],
            differences={m: PairedDifference.from_dict(d) for m, d in data["metrics"].items()},
        )


@dataclass
class EvaluationReport:
    """Metrics per configuration, per query, and each reranked configuration against its first stage.

    Attributes:
        results: configuration -> {metric: mean over queries}.
        per_query: configuration -> {query id: {metric: value}}.
        comparisons: reranked configuration -> its paired difference vs its first stage.
    """

    dataset: str
    queries: int
    limit: int
    results: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    per_query: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    comparisons: dict[str, Comparison] = field(default_factory=dict)

    def add(self, name: str, per_query: Mapping[str, Mapping[str, float]]) -> None:
        """Record a configuration from its per-query metrics (the means are computed here)."""
        rows = {str(q): {m: float(v[m]) for m in METRICS} for q, v in per_query.items()}
        self.per_query[name] = rows
        self.results[name] = {m: float(np.mean([r[m] for r in rows.values()])) if rows else 0.0 for m in METRICS}

    def compare(
        self, candidate: str, baseline: str, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED
    ) -> Comparison:
        """Paired bootstrap of `candidate` against `baseline` over their per-query metrics; stored
        in `comparisons[candidate]`."""
        for name in (candidate, baseline):
            if name not in self.per_query:
                raise ValueError(f"no per-query metrics for configuration {name!r}")
        comparison = Comparison(
            baseline=baseline,
            differences=compare_per_query(
                self.per_query[baseline], self.per_query[candidate], METRICS, resamples=resamples, seed=seed
            ),
        )
        self.comparisons[candidate] = comparison
        return comparison

    def table(self) -> str:
        """A plain-text table: one row per configuration, one column per metric."""
        width = max([len("configuration")] + [len(n) for n in self.results])
        lines = [f"{'configuration':<{width}}  " + "  ".join(f"{m:>10}" for m in METRICS)]
        lines.append("-" * len(lines[0]))
        for name, metrics in self.results.items():
            lines.append(f"{name:<{width}}  " + "  ".join(f"{metrics[m]:>10.4f}" for m in METRICS))
        return "\n".join(lines)

    def comparison_table(self, metrics: Sequence[str] = COMPARED_METRICS) -> str:
        """Each reranked configuration minus its first stage: mean difference, bootstrap interval,
        wins / ties / losses over queries, and whether the interval excludes 0. Empty when
        nothing was reranked."""
        if not self.comparisons:
            return ""
        first = next(iter(next(iter(self.comparisons.values())).differences.values()))
        width = max([len("configuration")] + [len(n) for n in self.comparisons])
        header = f"{'configuration':<{width}}  {'metric':<8}  {'diff':>8}  {f'{first.confidence:.0%} CI':>19}  {'win/tie/loss':>13}  outside noise"
        lines = [
            f"paired difference vs the first stage: {first.confidence:.0%} bootstrap CI over queries "
            f"({first.resamples:,} resamples, seed {first.seed})",
            header,
            "-" * len(header),
        ]
        for name, comparison in self.comparisons.items():
            for m in metrics:
                d = comparison.differences[m]
                ci = f"[{d.low:+.4f}, {d.high:+.4f}]"
                wtl = f"{d.wins}/{d.ties}/{d.losses}"
                lines.append(
                    f"{name:<{width}}  {m:<8}  {d.mean:>+8.4f}  {ci:>19}  {wtl:>13}  {'yes' if d.excludes_zero else 'no'}"
                )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "queries": self.queries,
            "limit": self.limit,
            "metrics": list(METRICS),
            "results": self.results,
            "notes": self.notes,
            "comparisons": {name: c.to_dict() for name, c in self.comparisons.items()},
            "per_query": self.per_query,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvaluationReport:
        """The report `to_dict` wrote (e.g. read back from the JSON of `rankbridge eval --json`)."""
        return cls(
            dataset=data["dataset"],
            queries=int(data["queries"]),
            limit=int(data["limit"]),
            results={n: dict(m) for n, m in data["results"].items()},
            notes=list(data.get("notes", [])),
            per_query={n: {q: dict(m) for q, m in rows.items()} for n, rows in data.get("per_query", {}).items()},
            comparisons={n: Comparison.from_dict(c) for n, c in data.get("comparisons", {}).items()},
        )


def evaluate_configurations(
    retriever: Any,
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    configurations: Sequence[Configuration],
    limit: int = 100,
    rerankers: Mapping[str, Any] | None = None,
    dataset: str = "",
    show_progress: bool = True,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
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
        resamples, seed: the paired bootstrap of every reranked configuration against its
            first stage (which is added as a row when it was not asked for).
    """
    from rankbridge.rerankers import load_reranker

    judged = {q: qrels[q] for q in queries if q in qrels}
    qids = list(queries)
    texts = [queries[q] for q in qids]
    built = dict(rerankers or {})
    first_runs: dict[str, dict[str, list[Candidate]]] = {}
    report = EvaluationReport(dataset=dataset, queries=len(judged), limit=limit)
    wanted = list(configurations)
    for stage in dict.fromkeys(c.first_stage for c in configurations if c.reranker is not None):
        if not any(c.first_stage == stage and c.reranker is None for c in wanted):
            wanted.insert(0, Configuration(stage))  # the baseline every reranked row is compared with
    for config in wanted:
        if config.first_stage not in first_runs:
            hits = retriever.search_many(texts, limit=limit, mode=config.first_stage, show_progress=show_progress)
            first_runs[config.first_stage] = dict(zip(qids, hits))
        run = first_runs[config.first_stage]
        if config.reranker is not None:
            if config.reranker not in built:
                built[config.reranker] = load_reranker(config.reranker)
            run = rerank_run(built[config.reranker], queries, run, depth=config.depth, show_progress=show_progress)
        report.add(config.name, evaluate(run, judged, per_query=True)["per_query"])
        logger.info("%s: %s", config.name, report.results[config.name])
    for config in wanted:
        if config.reranker is not None:
            report.compare(config.name, Configuration(config.first_stage).name, resamples=resamples, seed=seed)
    return report


def plot_report(report: EvaluationReport, path: str) -> None:
    """A grouped bar chart (one group per metric, one bar per configuration) written as PNG;
    see `rankbridge.integrations.evaluation.plots`."""
    from rankbridge.integrations.evaluation.plots import plot_report as _plot

    _plot(report, path)


def plot_differences(report: EvaluationReport, path: str, metric: str = "ndcg@10") -> None:
    """Sorted per-query differences of every reranked configuration against its first stage,
    written as PNG; see `rankbridge.integrations.evaluation.plots`."""
    from rankbridge.integrations.evaluation.plots import plot_differences as _plot

    _plot(report, path, metric=metric)


__all__ = [
    "METRICS",
    "COMPARED_METRICS",
    "Comparison",
    "Configuration",
    "EvaluationReport",
    "evaluate",
    "evaluate_configurations",
    "plot_differences",
    "plot_report",
    "rerank_run",
]
