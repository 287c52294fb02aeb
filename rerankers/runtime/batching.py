"""One batch planner for every model kind: sort by length, cut by a token budget and a row cap;
equal inputs found once (`distinct`) so duplicates score exactly alike."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np


def plan_batches(lengths: Sequence[int] | np.ndarray, max_tokens: int | None = None, batch_size: int | None = None) -> list[list[int]]:
    """Group item indices into batches, longest first (ties in input order).

    A batch grows while (rows x its longest item) stays within `max_tokens` (when given) and it has
    fewer than `batch_size` rows (when given). An item longer than the budget gets a batch of its
    own. Padding each batch to its first (longest) item wastes the least.

    Example:
        >>> plan_batches([10, 50, 20, 40], max_tokens=100, batch_size=8)
        [[1, 3], [2, 0]]
        >>> plan_batches([3, 3, 3], batch_size=2)
        [[0, 1], [2]]
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order.tolist():
        if current:
            too_wide = max_tokens is not None and (len(current) + 1) * longest > max_tokens
            too_many = batch_size is not None and len(current) >= batch_size
            if too_wide or too_many:
                batches.append(current)
                current = []
        if not current:
            longest = max(int(lengths[i]), 1)
        current.append(i)
    if current:
        batches.append(current)
    return batches


@dataclass
class BatchStats:
    """What the last scoring call did: pairs, and per batch its size and padded length."""

    pairs: int = 0
    batches: list[tuple[int, int]] = field(default_factory=list)  # (rows, padded tokens per row)

    @property
    def padded_tokens(self) -> int:
        return sum(rows * length for rows, length in self.batches)


class _NoProgress:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def distinct(keys: Sequence[Hashable]) -> tuple[list[int], list[int]]:
    """Score equal inputs once: (the position of each distinct key's first occurrence, and for
    every key the index of its distinct key in that list). Batched padding makes a model's output
    for the same input differ in the last bits from batch to batch; scoring each distinct input
    once makes duplicates tie exactly, so they keep their input order.

    Example:
        >>> distinct(["a", "b", "a", "c", "b"])
        ([0, 1, 3], [0, 1, 0, 2, 1])
    """
    first: list[int] = []
    slot_of: dict[Hashable, int] = {}
    slots = []
    for i, key in enumerate(keys):
        slot = slot_of.setdefault(key, len(first))
        if slot == len(first):
            first.append(i)
        slots.append(slot)
    return first, slots


def progress_bar(total: int, show: bool | None, desc: str):
    """A tqdm bar over `total` batches: always when `show`, never when False; when None, only for
    20+ batches and only on a terminal."""
    if show is False or (show is None and total < 20):
        return _NoProgress()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="batch", disable=None if show is None else False)


__all__ = ["BatchStats", "distinct", "plan_batches", "progress_bar"]
