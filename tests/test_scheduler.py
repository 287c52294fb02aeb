"""The window scheduler: plans, cost, application of permutations, sequential vs concurrent waves."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rankbridge.llm_rankers.scheduler import apply_window, estimate_calls, plan_waves, plan_windows, slide


def test_100_candidates_at_20_10_take_9_back_to_front_windows():
    windows = plan_windows(100, 20, 10)
    assert windows == [(e - 20, e) for e in range(100, 10, -10)]
    assert estimate_calls(100, 20, 10) == 9
    assert estimate_calls(100, 20, 10, num_passes=3) == 27


@pytest.mark.parametrize(
    ("n", "window", "step", "expected"),
    [(0, 20, 10, []), (1, 20, 10, []), (2, 20, 10, [(0, 2)]), (20, 20, 10, [(0, 20)]), (21, 20, 10, [(1, 21), (0, 20)]),
     (40, 20, 20, [(20, 40), (0, 20)]), (41, 20, 20, [(21, 41), (1, 21), (0, 20)])],
)
def test_window_edges(n, window, step, expected):
    assert plan_windows(n, window, step) == expected


def test_the_front_window_is_always_full_so_the_top_item_is_compared():
    # 41 at 20/20: (21, 41), (1, 21), then the front window is (0, 20), not a lone (0, 1).
    assert plan_windows(41, 20, 20)[-1] == (0, 20)
    assert estimate_calls(41, 20, 20) == 3


@given(n=st.integers(0, 300), window=st.integers(2, 40), data=st.data())
@settings(max_examples=300, deadline=None)
def test_plans_cover_every_candidate_and_concurrent_waves_never_overlap(n, window, data):
    step = data.draw(st.integers(1, window))
    windows = plan_windows(n, window, step)
    covered = {i for s, e in windows for i in range(s, e)}
    assert covered == (set(range(n)) if n >= 2 else set())
    assert all(2 <= e - s <= window for s, e in windows)
    assert not windows or windows[-1] == (0, min(n, window))
    assert [e for _, e in windows] == sorted((e for _, e in windows), reverse=True)  # back to front
    waves = plan_waves(n, window, step, concurrent=True)
    assert sorted(w for wave in waves for w in wave) == sorted(windows)
    for wave in waves:
        spans = sorted(wave)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    assert estimate_calls(n, window, step) == len(windows)


@pytest.mark.parametrize(("window", "step"), [(2, 0), (1, 1), (0, 5), (10, 11)])
def test_bad_window_or_step_is_rejected(window, step):
    with pytest.raises(ValueError, match="window_size|step"):
        plan_windows(10, window, step)


def test_apply_window_rejects_a_non_permutation():
    order = [0, 1, 2, 3]
    with pytest.raises(ValueError, match="permutation"):
        apply_window(order, (0, 3), [0, 0, 1])
    assert order == [0, 1, 2, 3]


async def _best_first(items):
    return sorted(range(len(items)), key=lambda p: -items[p])


def test_one_sequential_pass_bubbles_the_best_candidate_from_the_bottom_to_the_top():
    order = asyncio.run(slide(list(range(100)), plan_waves(100, 20, 10), _best_first))
    assert sorted(order) == list(range(100))
    assert order[:10] == list(range(99, 89, -1))


def test_concurrent_waves_are_a_different_algorithm_that_moves_items_less_far():
    sequential = asyncio.run(slide(list(range(100)), plan_waves(100, 20, 10), _best_first))
    concurrent = asyncio.run(slide(list(range(100)), plan_waves(100, 20, 10, concurrent=True), _best_first))
    assert sorted(concurrent) == list(range(100))
    assert sequential[0] == 99
    assert concurrent[0] != 99  # two waves move an item at most about two windows up


def test_without_overlap_sequential_and_concurrent_plans_agree():
    for n in (37, 100):
        s = asyncio.run(slide(list(range(n)), plan_waves(n, 10, 10), _best_first))
        c = asyncio.run(slide(list(range(n)), plan_waves(n, 10, 10, concurrent=True), _best_first))
        assert s == c


def test_windows_of_a_wave_run_at_once():
    in_flight = 0
    peak = 0

    async def slow_identity(items):
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return list(range(len(items)))

    asyncio.run(slide(list(range(100)), plan_waves(100, 20, 10, concurrent=True), slow_identity))
    assert peak == 5
    peak = 0
    asyncio.run(slide(list(range(100)), plan_waves(100, 20, 10), slow_identity))
    assert peak == 1


def test_num_passes_repeats_the_sweep():
    waves = plan_waves(50, 20, 10, num_passes=2)
    assert len(waves) == 2 * len(plan_windows(50, 20, 10))
    with pytest.raises(ValueError, match="num_passes"):
        plan_waves(50, 20, 10, num_passes=0)
