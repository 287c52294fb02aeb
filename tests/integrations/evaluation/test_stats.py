"""Paired bootstrap intervals against hand computations, fixed seeds, win / tie / loss counts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rankbridge.integrations.evaluation import stats
from rankbridge.integrations.evaluation.stats import PairedDifference, bootstrap_means, compare_per_query, paired_bootstrap

# A toy run: per-query nDCG@10 of a first stage and of a reranked list over 8 queries.
FIRST = [0.20, 0.50, 0.10, 0.90, 0.30, 0.00, 1.00, 0.45]
RERANKED = [0.40, 0.50, 0.00, 1.00, 0.60, 0.25, 1.00, 0.30]


def hand_percentile(sorted_values: list[float], q: float) -> float:
    """The linear-interpolation percentile (numpy's default), written out."""
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (pos - lo) * (sorted_values[hi] - sorted_values[lo])


def test_interval_matches_a_hand_computed_bootstrap_with_the_same_draws():
    resamples, seed = 2000, 3
    diffs = [b - a for a, b in zip(FIRST, RERANKED)]
    # By hand: draw the same index matrix, average each resample in a Python loop, sort, read off.
    draws = np.random.default_rng(seed).integers(0, len(diffs), size=(resamples, len(diffs)))
    means = sorted(sum(diffs[i] for i in row) / len(diffs) for row in draws.tolist())
    result = paired_bootstrap(FIRST, RERANKED, resamples=resamples, seed=seed)
    assert result.mean == pytest.approx(sum(diffs) / len(diffs))
    assert result.low == pytest.approx(hand_percentile(means, 0.025))
    assert result.high == pytest.approx(hand_percentile(means, 0.975))
    # wins: q1, q4, q5, q6; ties: q2, q7; losses: q3, q8
    assert (result.wins, result.ties, result.losses, result.queries) == (4, 2, 2, 8)
    assert result.baseline_mean == pytest.approx(np.mean(FIRST))
    assert result.candidate_mean == pytest.approx(np.mean(RERANKED))


def test_interval_matches_the_exact_bootstrap_distribution():
    # Differences [0, 0, 1]: a resample's mean is k/3, k ~ Binomial(3, 1/3), so P(mean = 0) = 8/27
    # (above 2.5%) and P(mean = 1) = 1/27 (above 2.5%): the exact 95% interval is [0, 1].
    result = paired_bootstrap([0.0, 0.0, 0.0], [0.0, 0.0, 1.0])
    assert (result.low, result.high) == (0.0, 1.0)
    assert not result.excludes_zero
    means = bootstrap_means([0.0, 0.0, 1.0])
    freq = {k: np.mean(np.isclose(means, k / 3)) for k in range(4)}
    exact = {k: math.comb(3, k) * (1 / 3) ** k * (2 / 3) ** (3 - k) for k in range(4)}
    for k in range(4):
        assert freq[k] == pytest.approx(exact[k], abs=0.015)  # 10,000 resamples


def test_a_fixed_seed_gives_a_fixed_interval():
    rng = np.random.default_rng(42)
    first = rng.uniform(size=60)
    reranked = np.clip(first + rng.normal(0.03, 0.15, size=60), 0, 1)
    one = paired_bootstrap(first, reranked, seed=0)
    assert one == paired_bootstrap(first, reranked, seed=0)
    assert (round(one.low, 6), round(one.high, 6)) == (-0.025653, 0.026743)
    other = paired_bootstrap(first, reranked, seed=1)
    assert (other.low, other.high) != (one.low, one.high) and other.mean == one.mean
    assert one.resamples == 10_000 and one.seed == 0 and one.confidence == 0.95


def test_blocks_of_draws_do_not_change_the_result(monkeypatch):
    values = np.linspace(-1, 1, 37) ** 3
    whole = bootstrap_means(values, resamples=500, seed=5)
    monkeypatch.setattr(stats, "_CHUNK_ELEMENTS", 37 * 7)  # blocks of 7 resamples
    assert np.array_equal(bootstrap_means(values, resamples=500, seed=5), whole)


def test_a_clear_lift_excludes_zero_and_a_loss_is_below_it():
    first = [0.1 * (i % 7) for i in range(40)]
    lift = paired_bootstrap(first, [v + 0.05 for v in first])
    assert lift.low == pytest.approx(0.05) and lift.high == pytest.approx(0.05) and lift.excludes_zero
    loss = paired_bootstrap(first, [v - 0.02 * (i % 3) for i, v in enumerate(first)])
    assert loss.high < 0 and loss.excludes_zero and loss.wins == 0
    assert "wins" in lift.describe("nDCG@10") and "+0.0500" in lift.describe()


def test_round_trip_and_bad_input():
    result = paired_bootstrap(FIRST, RERANKED, resamples=100)
    data = result.to_dict()
    assert data["excludes_zero"] == result.excludes_zero
    assert PairedDifference.from_dict(data) == result
    with pytest.raises(ValueError, match="one length"):
        paired_bootstrap([0.1, 0.2], [0.1])
    with pytest.raises(ValueError, match="non-empty"):
        paired_bootstrap([], [])
    with pytest.raises(ValueError, match="resamples"):
        paired_bootstrap([0.1], [0.2], resamples=0)
    with pytest.raises(ValueError, match="finite"):
        paired_bootstrap([float("nan")], [0.2])
    with pytest.raises(ValueError, match="same queries"):
        compare_per_query({"q1": {"m": 1.0}}, {"q2": {"m": 1.0}}, ["m"])


def test_compare_per_query_pairs_by_query_id_not_by_order():
    base = {"a": {"m": 0.0}, "b": {"m": 1.0}}
    cand = {"b": {"m": 1.0}, "a": {"m": 0.5}}  # another order: the pairing must follow the ids
    d = compare_per_query(base, cand, ["m"], resamples=200)["m"]
    assert d.mean == pytest.approx(0.25) and (d.wins, d.ties, d.losses) == (1, 1, 0)
