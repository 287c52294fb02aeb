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


def minmax(scores: Sequence[float] | np.ndarray) -> np.ndarray:
    """Scale finite scores to [0, 1] over the list (best 1, worst 0; all equal: all 1).

    Safe over the whole float range: a span wider than the largest float (e.g. -1e308 and
    1e308) is scaled without overflow. Non-finite input is a `ValueError` naming its position.

    Example:
        >>> minmax([-1e308, 0.0, 1e308]).tolist()
        [0.0, 0.5, 1.0]
    """
    x = np.asarray(scores, dtype=np.float64)
    if x.size == 0:
        return x
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
        raise ValueError(f"min-max scaling needs finite scores; position {int(bad[0])} is {x[bad[0]]}")
    lo, hi = float(x.min()), float(x.max())
    if hi <= lo:
        return np.ones_like(x)
    span = hi - lo
    if not np.isfinite(span):  # the range overflows: halve everything first (exact, no overflow)
        x, lo, span = x / 2.0, lo / 2.0, hi / 2.0 - lo / 2.0
    return np.clip((x - lo) / span, 0.0, 1.0)


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
