"""`identity`: keeps the first-stage order. A baseline, and the no-op backend for pipelines
that want the reranking interface without a model."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from rankbridge.rerankers.core.base import Reranker, Scores, first_stage_scores
from rankbridge.rerankers.core.calibration import minmax, rank_positions, rank_relevance
from rankbridge.rerankers.core.config import RerankerConfig
from rankbridge.rerankers.core.types import Candidate


class IdentityConfig(RerankerConfig):
    backend: Literal["identity"] = "identity"
    relevance: Literal["rank", "minmax"] = Field(
        "rank",
        description="How relevance is derived: `rank` = 1 - position / n in the first-stage order; "
        "`minmax` = the first-stage score min-max scaled over the list (rank when scores are missing).",
    )


class IdentityReranker(Reranker):
    """First-stage order: by `Candidate.score` (descending) when every candidate has one,
    else input order. `score` is the first-stage score (or n - index without one)."""

    name = "identity"
    config_class = IdentityConfig
    accepts_images = True  # it never looks at the content

    def _score_batch(self, queries: list[str], candidate_lists: list[list[Candidate]]) -> list[Scores]:
        return [self._score_query(q, c) for q, c in zip(queries, candidate_lists)]

    def _score_query(self, query: str, candidates: list[Candidate]) -> Scores:
        base = first_stage_scores(candidates)
        if self.config.relevance == "minmax" and all(c.score is not None for c in candidates):
            return Scores(base.scores, minmax(base.scores))
        positions = rank_positions(base.scores)
        return Scores(base.scores, rank_relevance(len(candidates))[positions])


__all__ = ["IdentityConfig", "IdentityReranker"]
