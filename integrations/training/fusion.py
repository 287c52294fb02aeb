"""Several `fuse_first_stage` weights (and fusion modes) of one reranker at the cost of one scoring."""

from __future__ import annotations

import copy
from typing import Any


def fused_variants(reranker: Any, weights: list[float], mode: str | None = None) -> dict[float, Any]:
    """Copies of `reranker` with `fuse_first_stage` set to each weight (and `fusion_mode` to
    `mode`, when given). They share its model and its scores: each (query, candidate ids) is
    scored once, however many weights and modes are evaluated (fusion only changes how the scores
    are blended, so rescoring would be wasted time). `reranker` itself is switched to the shared
    scores too, so rank it first or last alike; calling this again on the same reranker (another
    mode) shares the same scores. The cache lives as long as the rerankers do (one evaluation)."""
    if not weights:
        return {}
    if not getattr(reranker, "_shares_scores", False):
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
        reranker._shares_scores = True
    update: dict[str, Any] = {} if mode is None else {"fusion_mode": mode}
    variants = {}
    for weight in weights:
        variant = copy.copy(reranker)
        variant.config = reranker.config.model_copy(update={**update, "fuse_first_stage": weight})
        variants[weight] = variant
    return variants


__all__ = ["fused_variants"]
