"""A validation split carved out of the training queries: early stopping and the fusion weight.

`ValidationSet` holds held-out training queries, their judgments and the first stage's candidates
for them (the same first stage the model will rerank at test time). During training,
`RerankingValidator` reranks the top `depth` of each with the model being trained and reports
nDCG@10 / MRR@10 (pytrec_eval, graded), which `train_cross_encoder` uses to keep the best
checkpoint and stop early. After training, `choose_fusion_weight` picks `fuse_first_stage` (and
`fusion_mode`) on the same queries. Test queries are never involved.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rankbridge.integrations.evaluation.metrics import evaluate, rerank_run
from rankbridge.integrations.evaluation.stats import PairedDifference, paired_bootstrap
from rankbridge.integrations.training.mining import Document, FirstStage, document_text
from rankbridge.rerankers.core.errors import ConfigError
from rankbridge.rerankers.core.types import Candidate

logger = logging.getLogger(__name__)

DEFAULT_WEIGHTS = tuple(round(0.1 * i, 1) for i in range(11))
FUSION_RULES = ("significant", "best")


@dataclass
class ValidationSet:
    """Held-out training queries with their judgments and first-stage candidates.

    Attributes:
        queries: query id -> text.
        qrels: query id -> {document id: grade}.
        candidates: query id -> the first stage's top `depth`, best first, each with the
            document text and the first-stage score (what a reranker sees at test time).
        depth: how many candidates were retrieved per query.
    """

    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    candidates: dict[str, list[Candidate]]
    depth: int

    @classmethod
    def build(
        cls,
        first_stage: FirstStage,
        corpus: Mapping[str, Document],
        queries: Mapping[str, str],
        qrels: Mapping[str, Mapping[str, int]],
        depth: int = 100,
        text: Callable[[Document], str] = document_text,
        batch_size: int = 64,
    ) -> ValidationSet:
        """Retrieve the top `depth` for every query of `qrels` with `first_stage`."""
        if depth < 1:
            raise ConfigError(f"validation depth must be >= 1, got {depth}")
        missing = [q for q in qrels if q not in queries]
        if missing:
            raise ConfigError(f"validation qrels name query '{missing[0]}', which is not in the queries")
        qids = sorted(qrels)
        candidates: dict[str, list[Candidate]] = {}
        for start in range(0, len(qids), batch_size):
            chunk = qids[start : start + batch_size]
            for qid, hits in zip(chunk, first_stage.search_many([queries[q] for q in chunk], limit=depth)):
                candidates[qid] = [
                    Candidate(id=str(c.id), text=text(corpus[str(c.id)]), score=float(c.score if c.score is not None else 0.0))
                    for c in hits[:depth]
                ]
        return cls(
            queries={q: queries[q] for q in qids},
            qrels={q: dict(qrels[q]) for q in qids},
            candidates=candidates,
            depth=depth,
        )

    def pairs(self, depth: int | None = None) -> list[tuple[str, str]]:
        """(query, passage) for the top `depth` of every query, in query order."""
        k = self.depth if depth is None else depth
        return [(self.queries[q], c.text or "") for q in self.queries for c in self.candidates[q][:k]]

    def metrics_of_scores(self, scores: Sequence[float], depth: int | None = None) -> dict[str, float]:
        """nDCG@10 / MRR@10 when the top `depth` of each query is ordered by `scores` (flat, in
        `pairs(depth)` order; ties keep the first-stage order) and the rest keeps its order."""
        k = self.depth if depth is None else depth
        flat = np.asarray(scores, dtype=np.float64)
        run: dict[str, list[str]] = {}
        at = 0
        for q in self.queries:
            head = self.candidates[q][:k]
            s = flat[at : at + len(head)]
            at += len(head)
            order = np.argsort(-s, kind="stable")
            run[q] = [head[i].id for i in order] + [c.id for c in self.candidates[q][k:]]
        if at != flat.size:
            raise ValueError(f"got {flat.size} scores for {at} validation pairs")
        result = evaluate(run, self.qrels)
        return {"ndcg@10": result["ndcg@10"], "mrr@10": result["mrr@10"]}

    def first_stage_metrics(self, per_query: bool = False) -> dict[str, Any]:
        """nDCG@10 / MRR@10 of the first stage alone (and, with `per_query`, each query's)."""
        result = evaluate({q: [c.id for c in cands] for q, cands in self.candidates.items()}, self.qrels, per_query=per_query)
        return {k: result[k] for k in ("ndcg@10", "mrr@10", "per_query") if k in result}


def _base_evaluator() -> type:
    try:  # sentence-transformers >= 5.2
        from sentence_transformers.base.evaluation.evaluator import BaseEvaluator
    except ImportError:  # older releases
        from sentence_transformers.evaluation import SentenceEvaluator as BaseEvaluator
    return BaseEvaluator


def reranking_validator(validation: ValidationSet, depth: int = 30, batch_size: int = 64, name: str = "validation") -> Any:
    """A sentence-transformers evaluator: the model reranks the top `depth` of each validation
    query; returns `{name}_ndcg@10` (its primary metric) and `{name}_mrr@10`."""
    base = _base_evaluator()

    class RerankingValidator(base):
        def __init__(self) -> None:
            super().__init__()
            self.name, self.depth = name, min(depth, validation.depth)
            self.primary_metric = f"{name}_ndcg@10"
            self.greater_is_better = True
            self.history: list[dict[str, float]] = []

        def __call__(self, model: Any, output_path: str | None = None, epoch: int = -1, steps: int = -1) -> dict[str, float]:
            pairs = validation.pairs(self.depth)
            scores = model.predict(pairs, batch_size=batch_size, show_progress_bar=False)
            metrics = validation.metrics_of_scores(np.asarray(scores, dtype=np.float64).reshape(-1), self.depth)
            out = {f"{self.name}_{m}": v for m, v in metrics.items()}
            self.history.append({"epoch": epoch, "steps": steps, **out})
            logger.info("validation after %s steps: %s", steps, out)
            return out

        def get_config_dict(self) -> dict[str, Any]:
            return {"queries": len(validation.queries), "depth": self.depth}

    return RerankingValidator()


@dataclass
class FusionChoice:
    """The fusion weight (and mode) chosen on the validation split and what every one scored there.

    Attributes:
        weight: the chosen `fuse_first_stage`.
        mode: the chosen `fusion_mode`.
        ndcg_at_10: validation nDCG@10 per weight, in the chosen mode.
        by_mode: validation nDCG@10 per weight, for every mode tried.
        rule: `significant` (the best point replaces the prior only when it beats it outside the
            noise) or `best` (the best point, however small its lead).
        prior_mode, prior_weight: the choice made before any tuning (the first mode, the weight
            nearest `prior`).
        best_mode, best_weight: the point with the best validation nDCG@10.
        best_vs_prior: that point's paired difference against the prior (None when they are one).
        vs_first_stage: the chosen point's paired difference against the first stage alone.
    """

    weight: float
    ndcg_at_10: dict[float, float] = field(default_factory=dict)
    first_stage_ndcg_at_10: float = 0.0
    queries: int = 0
    depth: int = 0
    mode: str = "relevance"
    by_mode: dict[str, dict[float, float]] = field(default_factory=dict)
    rule: str = "significant"
    prior_mode: str = "relevance"
    prior_weight: float = 0.5
    best_mode: str = "relevance"
    best_weight: float = 0.5
    best_vs_prior: PairedDifference | None = None
    vs_first_stage: PairedDifference | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "weight": self.weight,
            "mode": self.mode,
            "ndcg@10": {str(w): v for w, v in self.ndcg_at_10.items()},
            "ndcg@10_by_mode": {m: {str(w): v for w, v in row.items()} for m, row in self.by_mode.items()},
            "first_stage_ndcg@10": self.first_stage_ndcg_at_10,
            "queries": self.queries,
            "depth": self.depth,
            "rule": self.rule,
            "prior": {"mode": self.prior_mode, "weight": self.prior_weight},
            "best": {"mode": self.best_mode, "weight": self.best_weight},
            "best_vs_prior": self.best_vs_prior.to_dict() if self.best_vs_prior else None,
            "vs_first_stage": self.vs_first_stage.to_dict() if self.vs_first_stage else None,
        }


def choose_fusion_weight(
    reranker: Any,
    validation: ValidationSet,
    depth: int | None = None,
    weights: Sequence[float] = DEFAULT_WEIGHTS,
    prior: float = 0.5,
    show_progress: bool = False,
    modes: Sequence[str] = ("relevance",),
    rule: str = "significant",
    seed: int = 0,
) -> FusionChoice:
    """Evaluate `reranker` fused with the first stage at every weight, in every fusion mode, on
    the validation queries (each query scored once: `fused_variants` shares the scores) and
    choose one.

    The best point is the highest nDCG@10; equal scores go to the earlier mode in `modes`, then
    to the weight nearest `prior`. The prior is the choice made before any tuning: the first mode
    at the weight nearest `prior` (0.5). With `rule="significant"` (the default) the best point
    replaces the prior only when its paired difference against it (95% bootstrap interval over
    the validation queries, 10,000 resamples, `seed`) lies wholly above 0: on a hundred or two
    validation queries the best of many points is partly the luckiest (in the README's runs every
    weight other than 0.5 that the best point alone chose scored lower on test than 0.5).
    `rule="best"` takes the best point however small its lead. Weight 0 is the first stage itself."""
    from rankbridge.rerankers.core.calibration import FUSION_MODES

    k = validation.depth if depth is None else min(depth, validation.depth)
    if not weights or any(not 0.0 <= w <= 1.0 for w in weights):
        raise ConfigError(f"fusion weights must be in [0, 1], got {list(weights)}")
    unknown = [m for m in modes if m not in FUSION_MODES]
    if not modes or unknown:
        raise ConfigError(f"fusion modes must be among {list(FUSION_MODES)}, got {list(modes)}")
    if rule not in FUSION_RULES:  # before the scoring, which takes minutes; `decide_fusion` checks it too
        raise ConfigError(f"the fusion rule must be one of {list(FUSION_RULES)}, got {rule!r}")
    per_query = fused_ndcg_per_query(reranker, validation, k, weights, modes, show_progress=show_progress)
    first_stage = validation.first_stage_metrics(per_query=True)["per_query"]
    choice = decide_fusion(per_query, {q: row["ndcg@10"] for q, row in first_stage.items()}, prior=prior, rule=rule, seed=seed)
    choice.queries, choice.depth = len(validation.queries), k
    return choice


def fused_ndcg_per_query(
    reranker: Any,
    validation: ValidationSet,
    depth: int,
    weights: Sequence[float] = DEFAULT_WEIGHTS,
    modes: Sequence[str] = ("relevance",),
    show_progress: bool = False,
) -> dict[str, dict[float, dict[str, float]]]:
    """Validation nDCG@10 of every query (mode -> weight -> query id -> value) with `reranker`
    fused with the first stage at each weight in each mode, reranking the top `depth`; each query
    is scored once (`fused_variants` shares the scores)."""
    from rankbridge.integrations.training.fusion import fused_variants

    per_query: dict[str, dict[float, dict[str, float]]] = {}
    for mode in dict.fromkeys(modes):
        variants = fused_variants(reranker, list(weights), mode=mode)
        per_query[mode] = {}
        for w in weights:
            run = rerank_run(variants[w], validation.queries, validation.candidates, depth=depth, show_progress=show_progress)
            rows = evaluate(run, validation.qrels, per_query=True)["per_query"]
            per_query[mode][float(w)] = {q: row["ndcg@10"] for q, row in rows.items()}
    return per_query


def fusion_verdict(lead: PairedDifference, taken: bool) -> str:
    """What the rule made of the best point's lead over the untuned choice."""
    if not taken:
        return "within the noise: the untuned choice is kept (--fusion-choice best would take the best point)"
    return "outside the noise: taken" if lead.low > 0.0 else "within the noise, taken by --fusion-choice best"


def decide_fusion(
    per_query: Mapping[str, Mapping[float, Mapping[str, float]]],
    first_stage: Mapping[str, float],
    prior: float = 0.5,
    rule: str = "significant",
    seed: int = 0,
) -> FusionChoice:
    """The choice `choose_fusion_weight` makes, from per-query nDCG@10 (mode -> weight -> query
    id -> value, modes in the order tried) and the first stage's (query id -> value)."""
    if rule not in FUSION_RULES:
        raise ConfigError(f"the fusion rule must be one of {list(FUSION_RULES)}, got {rule!r}")
    qids = sorted(first_stage)
    by_mode = {m: {w: float(np.mean([row[q] for q in qids])) for w, row in ws.items()} for m, ws in per_query.items()}
    best = max(v for row in by_mode.values() for v in row.values())
    order = list(by_mode)
    best_mode, best_weight = min(
        ((m, w) for m, row in by_mode.items() for w, v in row.items() if v >= best - 1e-12),
        key=lambda mw: (order.index(mw[0]), abs(mw[1] - prior), mw[1]),
    )
    prior_mode = order[0]
    prior_weight = min(by_mode[prior_mode], key=lambda w: (abs(w - prior), w))

    def paired(baseline: Mapping[str, float], candidate: Mapping[str, float]) -> PairedDifference:
        return paired_bootstrap([baseline[q] for q in qids], [candidate[q] for q in qids], seed=seed)

    best_vs_prior = None
    if (best_mode, best_weight) != (prior_mode, prior_weight):
        best_vs_prior = paired(per_query[prior_mode][prior_weight], per_query[best_mode][best_weight])
    keep_prior = rule == "significant" and best_vs_prior is not None and best_vs_prior.low <= 0.0
    mode, chosen = (prior_mode, prior_weight) if keep_prior else (best_mode, best_weight)
    return FusionChoice(
        weight=chosen, ndcg_at_10=by_mode[mode], first_stage_ndcg_at_10=float(np.mean([first_stage[q] for q in qids])),
        queries=len(qids), mode=mode, by_mode=by_mode, rule=rule,
        prior_mode=prior_mode, prior_weight=prior_weight, best_mode=best_mode, best_weight=best_weight,
        best_vs_prior=best_vs_prior, vs_first_stage=paired(first_stage, per_query[mode][chosen]),
    )


__all__ = [
    "DEFAULT_WEIGHTS", "FUSION_RULES", "FusionChoice", "ValidationSet", "choose_fusion_weight", "decide_fusion",
    "fused_ndcg_per_query", "fusion_verdict", "reranking_validator",
]
