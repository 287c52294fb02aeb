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
from rankbridge.integrations.training.mining import Document, FirstStage, document_text
from rankbridge.rerankers.core.errors import ConfigError
from rankbridge.rerankers.core.types import Candidate

logger = logging.getLogger(__name__)

DEFAULT_WEIGHTS = tuple(round(0.1 * i, 1) for i in range(11))


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

    def first_stage_metrics(self) -> dict[str, float]:
        result = evaluate({q: [c.id for c in cands] for q, cands in self.candidates.items()}, self.qrels)
        return {"ndcg@10": result["ndcg@10"], "mrr@10": result["mrr@10"]}


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
    """

    weight: float
    ndcg_at_10: dict[float, float] = field(default_factory=dict)
    first_stage_ndcg_at_10: float = 0.0
    queries: int = 0
    depth: int = 0
    mode: str = "relevance"
    by_mode: dict[str, dict[float, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "weight": self.weight,
            "mode": self.mode,
            "ndcg@10": {str(w): v for w, v in self.ndcg_at_10.items()},
            "ndcg@10_by_mode": {m: {str(w): v for w, v in row.items()} for m, row in self.by_mode.items()},
            "first_stage_ndcg@10": self.first_stage_ndcg_at_10,
            "queries": self.queries,
            "depth": self.depth,
        }


def choose_fusion_weight(
    reranker: Any,
    validation: ValidationSet,
    depth: int | None = None,
    weights: Sequence[float] = DEFAULT_WEIGHTS,
    prior: float = 0.5,
    show_progress: bool = False,
    modes: Sequence[str] = ("relevance",),
) -> FusionChoice:
    """Evaluate `reranker` fused with the first stage at every weight, in every fusion mode, on
    the validation queries (each query scored once: `fused_variants` shares the scores) and
    return the best nDCG@10. Equal scores go to the earlier mode in `modes`, then to the weight
    nearest `prior` (0.5: the choice made before any tuning). Weight 0 is the first stage itself,
    so a model that does not help is never chosen over it unless it is at least as good."""
    from rankbridge.integrations.training.fusion import fused_variants
    from rankbridge.rerankers.core.calibration import FUSION_MODES

    k = validation.depth if depth is None else min(depth, validation.depth)
    if not weights or any(not 0.0 <= w <= 1.0 for w in weights):
        raise ConfigError(f"fusion weights must be in [0, 1], got {list(weights)}")
    unknown = [m for m in modes if m not in FUSION_MODES]
    if not modes or unknown:
        raise ConfigError(f"fusion modes must be among {list(FUSION_MODES)}, got {list(modes)}")
    by_mode: dict[str, dict[float, float]] = {}
    for mode in dict.fromkeys(modes):
        variants = fused_variants(reranker, list(weights), mode=mode)
        by_mode[mode] = {}
        for w in weights:
            run = rerank_run(variants[w], validation.queries, validation.candidates, depth=k, show_progress=show_progress)
            by_mode[mode][float(w)] = evaluate(run, validation.qrels)["ndcg@10"]
    best = max(v for row in by_mode.values() for v in row.values())
    order = list(by_mode)
    mode, chosen = min(
        ((m, w) for m, row in by_mode.items() for w, v in row.items() if v >= best - 1e-12),
        key=lambda mw: (order.index(mw[0]), abs(mw[1] - prior), mw[1]),
    )
    return FusionChoice(
        weight=chosen, ndcg_at_10=by_mode[mode], first_stage_ndcg_at_10=validation.first_stage_metrics()["ndcg@10"],
        queries=len(validation.queries), depth=k, mode=mode, by_mode=by_mode,
    )


__all__ = ["DEFAULT_WEIGHTS", "FusionChoice", "ValidationSet", "choose_fusion_weight", "reranking_validator"]
