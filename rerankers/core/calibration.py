"""Turning a backend's raw numbers into relevance in [0, 1].

Which mapping a backend uses is part of its documented contract:

- `sigmoid`: a 1-logit cross-encoder; relevance is a probability-like value.
- `softmax`: a 2-label classifier, or P(yes) against P(no) from an LLM; relevance is P(positive).
- `minmax`: a score with no probabilistic meaning, scaled over one candidate list
  (the best gets 1, the worst 0; all-equal scores all get 1).
- `rank`: a position; relevance = 1 - position / n (the best of n gets 1, the last 1/n).
  Used for listwise rankers, whose output is an order, not a probability.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import numpy as np


def sigmoid(logits: Sequence[float] | np.ndarray) -> np.ndarray:
    x = np.asarray(logits, dtype=np.float64)
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out


def softmax_positive(logits: Sequence[Sequence[float]] | np.ndarray, positive: int = 1) -> np.ndarray:
    """P(class `positive`) from rows of class logits."""
    x = np.asarray(logits, dtype=np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e[..., positive] / e.sum(axis=-1)


def _finite(scores: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(scores, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
        raise ValueError(f"{what} needs finite scores; position {int(bad[0])} is {x[bad[0]]}")
    return x


def minmax(scores: Sequence[float] | np.ndarray) -> np.ndarray:
    """Scale finite scores to [0, 1] over the list (best 1, worst 0; all equal: all 1).

    Safe over the whole float range: a span wider than the largest float (e.g. -1e308 and
    1e308) is scaled without overflow. Non-finite input is a `ValueError` naming its position.

    Example:
        >>> minmax([-1e308, 0.0, 1e308]).tolist()
        [0.0, 0.5, 1.0]
    """
    x = _finite(scores, "min-max scaling")
    if x.size == 0:
        return x
    lo, hi = float(x.min()), float(x.max())
    if hi <= lo:
        return np.ones_like(x)
    span = hi - lo
    if not np.isfinite(span):  # the range overflows: halve everything first (exact, no overflow)
        x, lo, span = x / 2.0, lo / 2.0, hi / 2.0 - lo / 2.0
    return np.clip((x - lo) / span, 0.0, 1.0)


def dist_based(scores: Sequence[float] | np.ndarray) -> np.ndarray:
    """Scale finite scores to [0, 1] by their spread over the list: mean - 3 standard deviations
    maps to 0, mean + 3 to 1, clipped (Qdrant's and LlamaIndex's distribution-based score
    fusion). One outlier does not squeeze the rest together as it does under min-max. All equal:
    all 1, as `minmax`.

    Example:
        >>> dist_based([0.0, 1.0, 2.0]).round(4).tolist()
        [0.2959, 0.5, 0.7041]
    """
    x = _finite(scores, "distribution-based scaling")
    if x.size == 0:
        return x
    top = float(np.abs(x).max())
    x = x / top if top > 0 else x  # the scaling is affine-invariant; this keeps the moments finite
    std = float(x.std())
    if not std > 0:
        return np.ones_like(x)
    return np.clip((x - (x.mean() - 3.0 * std)) / (6.0 * std), 0.0, 1.0)


def reciprocal_rank(scores: Sequence[float] | np.ndarray, k: int = 60) -> np.ndarray:
    """(k + 1) / (k + rank) of each item, rank 1 for the best score (ties in input order): the
    reciprocal rank fusion term, scaled so that the best item gets 1.

    Example:
        >>> reciprocal_rank([0.1, 0.9, 0.5], k=1).tolist()
        [0.5, 1.0, 0.6666666666666666]
    """
    return (k + 1.0) / (k + 1.0 + rank_positions(scores))


FusionMode = Literal["relevance", "relative_score", "dist_based_score", "reciprocal_rerank"]
FUSION_MODES: tuple[str, ...] = get_args(FusionMode)


def fuse(weight: float, mode: str, relevance: np.ndarray, raw: np.ndarray, first_stage: np.ndarray) -> np.ndarray:
    """`weight * reranker + (1 - weight) * first stage`, each term in [0, 1] on the scale `mode` names:

    - `relevance`: the reranker's calibrated relevance; the first-stage score min-max scaled.
    - `relative_score`: both raw scores min-max scaled over the list.
    - `dist_based_score`: both scaled by `dist_based` (mean +- 3 standard deviations).
    - `reciprocal_rerank`: both orders' `reciprocal_rank` terms (k = 60).
    """
    if mode == "relevance":
        ours, theirs = relevance, minmax(first_stage)
    elif mode == "relative_score":
        ours, theirs = minmax(raw), minmax(first_stage)
    elif mode == "dist_based_score":
        ours, theirs = dist_based(raw), dist_based(first_stage)
    elif mode == "reciprocal_rerank":
        ours, theirs = reciprocal_rank(raw), reciprocal_rank(first_stage)
    else:
        raise ValueError(f"fusion mode must be one of {list(FUSION_MODES)}, got {mode!r}")
    return weight * ours + (1.0 - weight) * theirs


def rank_relevance(n: int) -> np.ndarray:
    """Relevance for positions 0..n-1 of a ranked list: 1 - position / n."""
    return 1.0 - np.arange(n, dtype=np.float64) / max(n, 1)


def rank_positions(scores: Sequence[float] | np.ndarray) -> np.ndarray:
    """Position of each item when sorted by score descending, ties in input order."""
    x = np.asarray(scores, dtype=np.float64)
    order = np.lexsort((np.arange(x.size), -x))
    positions = np.empty(x.size, dtype=np.int64)
    positions[order] = np.arange(x.size)
    return positions
