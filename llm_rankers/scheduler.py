"""The sliding-window scheduler of listwise ranking (RankGPT), separate from any model.

A window of `window_size` candidates slides from the back of the list to the front by `step`;
each window's permutation is applied to the running order, so a strong candidate found near the
bottom can bubble up to the top in one pass. `num_passes` repeats the sweep.

100 candidates at window 20 / step 10 take 9 windows per pass: (80, 100), (70, 90), ..., (0, 20).

Sequential windows depend on each other (each overlaps the previous one). The `concurrent` plan
groups windows into waves of windows that do not overlap (window i goes to wave i mod m, with
m = ceil(window_size / step)) and runs each wave's windows at once. That is a different algorithm:
a candidate moves at most one window per wave, so it can lose quality against the sequential sweep
(`benchmarks/listwise_cost.py` measures by how much). With `step >= window_size` the windows never
overlap and both plans give the same result.

Example:
    >>> plan_windows(100, 20, 10)[:3]
    [(80, 100), (70, 90), (60, 80)]
    >>> estimate_calls(100, 20, 10)
    9
    >>> [len(w) for w in plan_waves(100, 20, 10, concurrent=True)]
    [5, 4]
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence

Window = tuple[int, int]
RankWindow = Callable[[list[int]], Awaitable[Sequence[int]]]


def plan_windows(n: int, window_size: int, step: int) -> list[Window]:
    """The `(start, end)` windows of one back-to-front pass over `n` candidates.

    The front window is always full (`(0, min(n, window_size))`), so the top of the list is
    ordered by one complete window even when `n` is not a multiple of `step`; `n <= 1` gives none.

    Example:
        >>> plan_windows(25, 20, 10)
        [(5, 25), (0, 20)]
        >>> plan_windows(7, 20, 10)
        [(0, 7)]
    """
    _check(window_size, step)
    if n < 2:
        return []
    windows: list[Window] = []
    end = n
    while True:
        start = end - window_size
        if start <= 0:
            windows.append((0, min(n, window_size)))
            return windows
        windows.append((start, end))
        end -= step


def plan_waves(n: int, window_size: int, step: int, num_passes: int = 1, concurrent: bool = False) -> list[list[Window]]:
    """Windows grouped into waves; the windows of one wave run at once, waves run in order.

    Sequential: one window per wave. Concurrent: non-overlapping windows share a wave.

    Example:
        >>> plan_waves(60, 20, 10, concurrent=True)
        [[(40, 60), (20, 40), (0, 20)], [(30, 50), (10, 30)]]
    """
    if num_passes < 1:
        raise ValueError(f"num_passes must be >= 1, got {num_passes}")
    windows = plan_windows(n, window_size, step)
    if not concurrent:
        one_pass = [[w] for w in windows]
    else:
        # Window i goes to wave i mod m, or to a later wave where it overlaps nothing.
        m = max(1, math.ceil(window_size / step))
        one_pass = []
        for i, window in enumerate(windows):
            k = i % m
            while k < len(one_pass) and any(_overlap(window, other) for other in one_pass[k]):
                k += 1
            if k == len(one_pass):
                one_pass.append([])
            one_pass[k].append(window)
    return [list(wave) for _ in range(num_passes) for wave in one_pass]


def estimate_calls(n: int, window_size: int, step: int, num_passes: int = 1) -> int:
    """LLM calls needed to rank `n` candidates (the same for sequential and concurrent plans).

    Example:
        >>> estimate_calls(100, 20, 10), estimate_calls(100, 20, 20), estimate_calls(1, 20, 10)
        (9, 5, 0)
    """
    return num_passes * len(plan_windows(n, window_size, step))


def apply_window(order: list[int], window: Window, permutation: Sequence[int]) -> None:
    """Reorder `order[start:end]` in place: position p of the window gets the item that was at
    window position `permutation[p]`.

    Example:
        >>> order = [10, 11, 12, 13]
        >>> apply_window(order, (1, 4), [2, 0, 1])
        >>> order
        [10, 13, 11, 12]
    """
    start, end = window
    current = order[start:end]
    if sorted(permutation) != list(range(len(current))):
        raise ValueError(f"window {window} needs a permutation of range({len(current)}), got {list(permutation)}")
    order[start:end] = [current[p] for p in permutation]


async def slide(order: Sequence[int], waves: Sequence[Sequence[Window]], rank_window: RankWindow) -> list[int]:
    """Run the waves over `order` (item ids, best first) and return the new order.

    `rank_window(items)` gets the ids in one window, in their current order, and returns a
    permutation of window positions, best first. The windows of a wave run concurrently.

    Example:
        >>> import asyncio
        >>> async def biggest_first(items):
        ...     return sorted(range(len(items)), key=lambda p: -items[p])
        >>> asyncio.run(slide(list(range(6)), plan_waves(6, 3, 1), biggest_first))
        [5, 4, 0, 1, 2, 3]
    """
    running = list(order)
    for wave in waves:
        windows = list(wave)
        permutations = await asyncio.gather(*(rank_window(running[s:e]) for s, e in windows))
        for window, permutation in zip(windows, permutations):
            apply_window(running, window, permutation)
    return running


def _overlap(a: Window, b: Window) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _check(window_size: int, step: int) -> None:
    if window_size < 2:
        raise ValueError(f"window_size must be >= 2, got {window_size}")
    if not 1 <= step <= window_size:
        raise ValueError(
            f"step must be between 1 and window_size={window_size}, got {step}: with a larger step the "
            "candidates between two windows would never be compared"
        )


__all__ = ["apply_window", "estimate_calls", "plan_waves", "plan_windows", "slide"]
