"""The sliding-window scheduler of listwise ranking (RankGPT), separate from any model.

A window of `window_size` candidates slides from the back of the list to the front by `step`;
each window's permutation is applied to the running order, so a strong candidate found near the
bottom can bubble up to the top in one pass. `num_passes` repeats the sweep.

100 candidates at window 20 / step 10 take 9 windows per pass: (80, 100), (70, 90), ..., (0, 20).

`slide(..., concurrent=True)` starts each window as soon as every earlier window that overlaps it
has finished. Windows that overlap never run at the same time and keep their sequential order, so
the result is exactly the sequential one; what runs at once are windows that share no candidate:
all windows when `step == window_size`, and successive passes (pass 2 starts at the back while
pass 1 is still moving to the front). Within one pass with `step < window_size` every window
overlaps the one before it and nothing can overlap in time.

Grouping non-overlapping windows into "waves" (every other window at once) was measured and
rejected: it is a different algorithm that moves a candidate at most one window per wave, and
lost nDCG@10 on SciFact against the sequential sweep (`benchmarks/listwise_cost.py`).

Example:
    >>> plan_windows(100, 20, 10)[:3]
    [(80, 100), (70, 90), (60, 80)]
    >>> estimate_calls(100, 20, 10)
    9
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

Window = tuple[int, int]
RankWindow = Callable[[list[int]], Awaitable[Sequence[int]]]


def plan_windows(n: int, window_size: int, step: int, num_passes: int = 1) -> list[Window]:
    """The `(start, end)` windows of `num_passes` back-to-front passes over `n` candidates, in
    sequential order.

    The front window is always full (`(0, min(n, window_size))`), so the top of the list is
    ordered by one complete window even when `n` is not a multiple of `step`; `n <= 1` gives none.

    Example:
        >>> plan_windows(25, 20, 10)
        [(5, 25), (0, 20)]
        >>> plan_windows(7, 20, 10)
        [(0, 7)]
    """
    _check(window_size, step)
    if num_passes < 1:
        raise ValueError(f"num_passes must be >= 1, got {num_passes}")
    if n < 2:
        return []
    windows: list[Window] = []
    end = n
    while True:
        start = end - window_size
        if start <= 0:
            windows.append((0, min(n, window_size)))
            return windows * num_passes
        windows.append((start, end))
        end -= step


def estimate_calls(n: int, window_size: int, step: int, num_passes: int = 1) -> int:
    """LLM calls needed to rank `n` candidates (the same for sequential and concurrent plans).

    Example:
        >>> estimate_calls(100, 20, 10), estimate_calls(100, 20, 20), estimate_calls(1, 20, 10)
        (9, 5, 0)
    """
    return len(plan_windows(n, window_size, step, num_passes))


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


async def slide(
    order: Sequence[int], windows: Sequence[Window], rank_window: RankWindow, concurrent: bool = False
) -> list[int]:
    """Run `windows` over `order` (item ids, best first) and return the new order.

    `rank_window(items)` gets the ids in one window, in their current order, and returns a
    permutation of window positions, best first. With `concurrent=True` a window starts as soon
    as the earlier windows that overlap it are done; the result is the same as sequential.

    Example:
        >>> import asyncio
        >>> async def biggest_first(items):
        ...     return sorted(range(len(items)), key=lambda p: -items[p])
        >>> asyncio.run(slide(list(range(6)), plan_windows(6, 3, 1), biggest_first))
        [5, 4, 0, 1, 2, 3]
    """
    running = list(order)
    windows = list(windows)
    if not concurrent:
        for window in windows:
            apply_window(running, window, await rank_window(running[window[0]:window[1]]))
        return running

    done = [asyncio.Event() for _ in windows]
    waits_for = [[i for i in range(j) if _overlap(windows[i], windows[j])] for j in range(len(windows))]

    async def run(j: int) -> None:
        for i in waits_for[j]:
            await done[i].wait()
        start, end = windows[j]
        apply_window(running, windows[j], await rank_window(running[start:end]))
        done[j].set()

    tasks = [asyncio.ensure_future(run(j)) for j in range(len(windows))]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:  # the others would wait forever for a window that failed
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
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


__all__ = ["apply_window", "estimate_calls", "plan_windows", "slide"]
