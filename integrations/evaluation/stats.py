"""Paired comparisons of two runs over the same queries: the mean difference, a bootstrap
confidence interval and win / tie / loss counts.

On 30 or 300 queries a difference of a few points of nDCG@10 can be noise. The paired bootstrap
resamples queries with replacement (both runs move together, so the query difficulty cancels),
recomputes the mean difference each time and reads the interval off the percentiles. When the
95% interval excludes 0 the difference is outside the noise of this query sample; when it
includes 0 these queries cannot tell it from none.

Example:
    >>> d = paired_bootstrap([0.5, 0.7, 0.9, 0.4], [0.6, 0.9, 0.9, 0.8], resamples=1000, seed=0)
    >>> round(d.mean, 3), (d.wins, d.ties, d.losses)
    (0.175, (3, 1, 0))
    >>> d.low > 0, d.excludes_zero
    (True, True)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

DEFAULT_RESAMPLES = 10_000
DEFAULT_SEED = 0
DEFAULT_CONFIDENCE = 0.95
TIE_TOLERANCE = 1e-9  # per-query differences smaller than this count as ties
_CHUNK_ELEMENTS = 4_000_000  # resample indices drawn per block: bounded memory for large query sets


@dataclass(frozen=True)
class PairedDifference:
    """`candidate - baseline` over the same queries.

    Attributes:
        mean: mean per-query difference (the point estimate of the lift).
        low, high: the bootstrap percentile interval at `confidence`.
        wins, ties, losses: queries where the candidate is better, equal, worse.
        queries: how many queries were paired.
        resamples, seed, confidence: how the interval was computed.
        baseline_mean, candidate_mean: the two means the difference is of.
    """

    mean: float
    low: float
    high: float
    wins: int
    ties: int
    losses: int
    queries: int
    resamples: int
    seed: int
    confidence: float
    baseline_mean: float
    candidate_mean: float

    @property
    def excludes_zero(self) -> bool:
        """Whether the interval lies wholly above or wholly below 0 (outside the noise)."""
        return self.low > 0.0 or self.high < 0.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["excludes_zero"] = self.excludes_zero
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PairedDifference:
        fields = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in fields})

    def describe(self, metric: str = "") -> str:
        """One line: `nDCG@10 +0.034 [95% CI +0.012, +0.057], 41 wins / 230 ties / 29 losses`."""
        name = f"{metric} " if metric else ""
        pct = f"{self.confidence * 100:g}%"
        return (
            f"{name}{self.mean:+.4f} [{pct} CI {self.low:+.4f}, {self.high:+.4f}], "
            f"{self.wins} wins / {self.ties} ties / {self.losses} losses over {self.queries} queries"
        )


def bootstrap_means(
    values: Sequence[float] | np.ndarray, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED
) -> np.ndarray:
    """Means of `resamples` resamples (with replacement, same size) of `values`.

    Resample r uses row r of `numpy.random.default_rng(seed).integers(0, n, size=(resamples, n))`,
    drawn in blocks of rows so memory stays bounded however many queries there are; the blocks
    concatenate to exactly that matrix, so the result does not depend on the block size.
    """
    data = np.asarray(values, dtype=np.float64)
    if data.ndim != 1 or data.size == 0:
        raise ValueError(f"bootstrap needs a non-empty 1-D sequence of values, got shape {data.shape}")
    if not isinstance(resamples, int) or resamples < 1:
        raise ValueError(f"resamples must be a positive int, got {resamples!r}")
    n = data.size
    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK_ELEMENTS // n)
    means = np.empty(resamples, dtype=np.float64)
    for start in range(0, resamples, rows):
        stop = min(resamples, start + rows)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = data[idx].mean(axis=1)
    return means


def paired_bootstrap(
    baseline: Sequence[float] | np.ndarray,
    candidate: Sequence[float] | np.ndarray,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    confidence: float = DEFAULT_CONFIDENCE,
) -> PairedDifference:
    """The paired difference `candidate - baseline` with a percentile bootstrap interval.

    `baseline[i]` and `candidate[i]` must be the same query's metric. The interval is the
    `(1 - confidence) / 2` and `(1 + confidence) / 2` quantiles (numpy's default, linear
    interpolation) of `bootstrap_means(candidate - baseline, resamples, seed)`: the same seed
    gives the same interval.
    """
    a = np.asarray(baseline, dtype=np.float64)
    b = np.asarray(candidate, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired values need two 1-D sequences of one length, got {a.shape} and {b.shape}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("paired values must be finite numbers")
    diff = b - a
    means = bootstrap_means(diff, resamples=resamples, seed=seed)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return PairedDifference(
        mean=float(diff.mean()),
        low=float(low),
        high=float(high),
        wins=int((diff > TIE_TOLERANCE).sum()),
        ties=int((np.abs(diff) <= TIE_TOLERANCE).sum()),
        losses=int((diff < -TIE_TOLERANCE).sum()),
        queries=int(diff.size),
        resamples=resamples,
        seed=seed,
        confidence=confidence,
        baseline_mean=float(a.mean()),
        candidate_mean=float(b.mean()),
    )


def compare_per_query(
    baseline: Mapping[str, Mapping[str, float]],
    candidate: Mapping[str, Mapping[str, float]],
    metrics: Sequence[str],
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    confidence: float = DEFAULT_CONFIDENCE,
) -> dict[str, PairedDifference]:
    """`paired_bootstrap` per metric over per-query metrics (query id -> {metric: value}).

    Both must hold the same query ids (an evaluation scores every judged query, so a missing
    one is a bug, not a zero): a mismatch raises `ValueError` naming one of them.
    """
    missing = set(baseline) ^ set(candidate)
    if missing:
        raise ValueError(f"the two runs do not cover the same queries (e.g. {sorted(missing)[0]!r})")
    qids = sorted(baseline)
    return {
        m: paired_bootstrap(
            [baseline[q][m] for q in qids], [candidate[q][m] for q in qids],
            resamples=resamples, seed=seed, confidence=confidence,
        )
        for m in metrics
    }


__all__ = [
    "DEFAULT_CONFIDENCE",
    "DEFAULT_RESAMPLES",
    "DEFAULT_SEED",
    "PairedDifference",
    "bootstrap_means",
    "compare_per_query",
    "paired_bootstrap",
]
