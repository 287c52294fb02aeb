"""The window scheduler: plans, cost, application of permutations, sequential vs concurrent windows."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rankbridge.llm_rankers.listwise.scheduler import apply_window, estimate_calls, plan_windows, slide


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
def test_plans_cover_every_candidate_back_to_front(n, window, data):
    step = data.draw(st.integers(1, window))
    windows = plan_windows(n, window, step)
    covered = {i for s, e in windows for i in range(s, e)}
    assert covered == (set(range(n)) if n >= 2 else set())
    assert all(2 <= e - s <= window for s, e in windows)
    assert not windows or windows[-1] == (0, min(n, window))
    assert [e for _, e in windows] == sorted((e for _, e in windows), reverse=True)  # back to front
    assert estimate_calls(n, window, step) == len(windows)
    assert plan_windows(n, window, step, num_passes=2) == windows * 2


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
    order = asyncio.run(slide(list(range(100)), plan_windows(100, 20, 10), _best_first))
    assert sorted(order) == list(range(100))
    assert order[:10] == list(range(99, 89, -1))


@given(
    n=st.integers(0, 60),
    window=st.integers(2, 12),
    passes=st.integers(1, 3),
    keys=st.lists(st.integers(0, 5), min_size=60, max_size=60),
    data=st.data(),
)
@settings(max_examples=200, deadline=None)
def test_concurrent_windows_give_exactly_the_sequential_result(n, window, passes, keys, data):
    step = data.draw(st.integers(1, window))

    async def noisy_ranker(items):  # any deterministic function of the window's content
        await asyncio.sleep(0)
        return sorted(range(len(items)), key=lambda p: (-keys[items[p]], (items[p] * 7) % 5, p))

    windows = plan_windows(n, window, step, passes)
    sequential = asyncio.run(slide(list(range(n)), windows, noisy_ranker))
    concurrent = asyncio.run(slide(list(range(n)), windows, noisy_ranker, concurrent=True))
    assert concurrent == sequential
    assert sorted(sequential) == list(range(n))


@pytest.mark.parametrize(
    ("window", "step", "passes", "peak"),
    [(20, 20, 1, 5), (20, 10, 1, 1), (20, 10, 2, 2), (10, 10, 1, 10)],
)
def test_only_windows_that_share_no_candidate_run_at_once(window, step, passes, peak):
    in_flight: list[tuple[int, int]] = []
    seen_peak = 0

    async def slow_identity(items):
        nonlocal seen_peak
        span = (min(items), max(items))
        assert all(span[1] < a or b < span[0] for a, b in in_flight), "overlapping windows ran at once"
        in_flight.append(span)
        seen_peak = max(seen_peak, len(in_flight))
        await asyncio.sleep(0.01)
        in_flight.remove(span)
        return list(range(len(items)))

    order = asyncio.run(slide(list(range(100)), plan_windows(100, window, step, passes), slow_identity, concurrent=True))
    assert order == list(range(100))
    assert seen_peak == peak


def test_a_failing_window_cancels_the_windows_waiting_for_it():
    started = []

    async def fail_second(items):
        started.append(items[0])
        if len(started) == 2:
            raise RuntimeError("server down")
        await asyncio.sleep(0.01)
        return list(range(len(items)))

    with pytest.raises(RuntimeError, match="server down"):
        asyncio.run(slide(list(range(100)), plan_windows(100, 20, 10, 2), fail_second, concurrent=True))
    assert len(started) < 18


def test_num_passes_repeats_the_sweep():
    assert len(plan_windows(50, 20, 10, num_passes=2)) == 2 * len(plan_windows(50, 20, 10))
    with pytest.raises(ValueError, match="num_passes"):
        plan_windows(50, 20, 10, num_passes=0)
