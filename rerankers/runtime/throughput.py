"""How fast a reranker scores pairs on this machine, by pair length: the model behind `budget_ms`.

`throughput_model(reranker)` times a few batches of synthetic pairs at several token lengths (once
per scoring identity and machine), caches the measurement as JSON under
`$RANKBRIDGE_CACHE_DIR/throughput/`, and returns a `ThroughputModel`. `ThroughputModel.depth_within`
answers "how many of these candidates, in this order, can be scored within the budget?".

Lengths are counted in the reranker's own tokens (query + document + 3 special tokens, capped at
its `max_length`) when it has a `tokenizer`, else approximately as characters / 4.

Example:
    >>> model = ThroughputModel(lengths=[64, 512], seconds_per_pair=[0.001, 0.008], overhead_s=0.002)
    >>> model.depth_within([64, 64, 512, 64], budget_s=0.012)
    3
    >>> model.depth_within([64, 64, 512, 64], budget_s=0.005)
    2
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rankbridge.rerankers.core.paths import atomic_write_text, cache_dir
from rankbridge.rerankers.core.types import Candidate

logger = logging.getLogger(__name__)

_WORDS = (
    "the cells of patients treated with the protein showed a lower rate of infection than those given "
    "placebo while expression of the receptor in blood samples increased over twelve weeks of follow up "
    "and the study found no effect on mortality among older adults with chronic disease"
).split()
_QUERY = "does the protein lower the rate of infection in older patients"
DEFAULT_LENGTHS = (32, 64, 128, 256, 512)


@dataclass
class ThroughputModel:
    """Seconds per pair at measured pair lengths (linear in between), plus a fixed cost per call.

    Attributes:
        lengths: pair lengths measured, ascending (tokens, or characters / 4: see `unit`).
        seconds_per_pair: the measured cost of one pair at each length, within a batch.
        overhead_s: the fixed cost of one scoring call (tokenizer, batch set-up).
        unit: "tokens" or "chars/4".
    """

    lengths: list[int]
    seconds_per_pair: list[float]
    overhead_s: float = 0.0
    unit: str = "tokens"
    measured: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.lengths or len(self.lengths) != len(self.seconds_per_pair):
            raise ValueError("a throughput model needs one seconds_per_pair value per measured length")
        order = np.argsort(self.lengths)
        self.lengths = [int(self.lengths[i]) for i in order]
        self.seconds_per_pair = [max(float(self.seconds_per_pair[i]), 0.0) for i in order]

    def pair_seconds(self, lengths: Sequence[int]) -> np.ndarray:
        """Estimated seconds of each pair: interpolated between measured lengths; past the longest
        measured one, proportional to length. A longer pair never costs less than a shorter one
        (a noisy measurement is read as its running maximum), so the estimate errs long."""
        x = np.asarray(lengths, dtype=np.float64)
        xs = np.asarray(self.lengths, dtype=np.float64)
        ys = np.maximum.accumulate(np.asarray(self.seconds_per_pair, dtype=np.float64))
        cost = np.interp(x, xs, ys)
        beyond = x > xs[-1]
        cost[beyond] = ys[-1] * x[beyond] / max(xs[-1], 1.0)
        return cost

    def seconds(self, lengths: Sequence[int]) -> float:
        """Estimated seconds to score these pairs in one call."""
        return self.overhead_s + float(self.pair_seconds(lengths).sum()) if len(lengths) else 0.0

    def pairs_per_second(self) -> dict[int, float]:
        return {n: (1.0 / s if s > 0 else float("inf")) for n, s in zip(self.lengths, self.seconds_per_pair)}

    def depth_within(self, lengths: Sequence[int], budget_s: float) -> int:
        """The most leading pairs of `lengths` (in that order) whose estimated time fits `budget_s`."""
        if not len(lengths):
            return 0
        total = self.overhead_s + np.cumsum(self.pair_seconds(lengths))
        return int(np.searchsorted(total, budget_s, side="right"))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ThroughputModel:
        return cls(
            lengths=list(data["lengths"]),
            seconds_per_pair=list(data["seconds_per_pair"]),
            overhead_s=float(data.get("overhead_s", 0.0)),
            unit=str(data.get("unit", "tokens")),
            measured=dict(data.get("measured") or {}),
        )


def pair_lengths(reranker: Any, query: str, texts: Sequence[str]) -> list[int]:
    """Length of each (query, text) pair as `reranker` sees it: its tokenizer's tokens (capped at its
    `max_length`) when it has one, else characters / 4."""
    tokenizer = getattr(reranker, "tokenizer", None)
    if callable(tokenizer):
        try:
            q = len(tokenizer(query, add_special_tokens=False)["input_ids"])
            docs = tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"] if texts else []
        except Exception as exc:  # a tokenizer that does not take these arguments: use the estimate
            logger.debug("pair_lengths: tokenizer of %s failed (%s); estimating from characters", type(reranker).__name__, exc)
        else:
            cap = _max_length(reranker)
            return [min(q + len(d) + 3, cap) if cap else q + len(d) + 3 for d in docs]
    return [(len(query) + len(t)) // 4 + 3 for t in texts]


def length_unit(reranker: Any) -> str:
    return "tokens" if callable(getattr(reranker, "tokenizer", None)) else "chars/4"


def _max_length(reranker: Any) -> int | None:
    value = getattr(reranker, "max_length", None) or getattr(getattr(reranker, "config", None), "max_length", None)
    return int(value) if isinstance(value, (int, np.integer)) and value > 0 else None


def _text_of_length(reranker: Any, target: int) -> tuple[str, int]:
    """A synthetic document whose pair with `_QUERY` is about `target` long; returns (text, length)."""
    words = max(target, 1)
    text = " ".join(_WORDS[i % len(_WORDS)] for i in range(words))
    # Shrink to the target in a few steps (tokenizers split words into one or more tokens).
    for _ in range(6):
        length = pair_lengths(reranker, _QUERY, [text])[0]
        if length <= target or words <= 1:
            break
        words = max(1, int(words * target / length) - 1)
        text = " ".join(_WORDS[i % len(_WORDS)] for i in range(words))
    return text, pair_lengths(reranker, _QUERY, [text])[0]


def measure_throughput(
    reranker: Any, lengths: Sequence[int] | None = None, pairs: int = 16, repeats: int = 3
) -> ThroughputModel:
    """Time `reranker._score_batch` on `pairs` synthetic pairs at each length (best of `repeats`,
    after one warm-up call), and one single short pair for the per-call overhead. Calls the scoring
    primitive directly, so no score cache answers for it."""
    cap = _max_length(reranker)
    grid = sorted({min(n, cap) if cap else n for n in (lengths or DEFAULT_LENGTHS)})
    logger.info("measuring the throughput of %s at pair lengths %s (once; cached)", type(reranker).__name__, grid)

    def timed(text: str, count: int) -> float:
        # Distinct at the start (an end past max_length is cut off): no backend can score one pair for all.
        cands = [Candidate(text=f"{_WORDS[i % len(_WORDS)]} {i} {text}") for i in range(count)]
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            reranker._score_batch([_QUERY], [cands])
            best = min(best, time.perf_counter() - start)
        return best

    measured_lengths, per_pair = [], []
    first_text, _ = _text_of_length(reranker, grid[0])
    timed(first_text, 2)  # warm-up: lazy loading, first-call allocations
    for target in grid:
        text, actual = _text_of_length(reranker, target)
        measured_lengths.append(actual)
        per_pair.append(timed(text, pairs) / pairs)
    single = timed(first_text, 1)
    overhead = max(0.0, single - per_pair[0])
    # Two targets can land on one actual length (short max_length): keep the first of each.
    seen: dict[int, float] = {}
    for n, s in zip(measured_lengths, per_pair):
        seen.setdefault(n, s)
    return ThroughputModel(
        lengths=list(seen),
        seconds_per_pair=list(seen.values()),
        overhead_s=overhead,
        unit=length_unit(reranker),
        measured={"pairs_per_batch": pairs, "repeats": repeats, "at": time.strftime("%Y-%m-%dT%H:%M:%S")},
    )


def machine_descriptor(reranker: Any = None) -> dict[str, Any]:
    """What makes timings on this machine differ from another's: host, CPU, core count, device."""
    device = getattr(reranker, "device", None)
    return {
        "host": platform.node(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpus": os.cpu_count(),
        "device": None if device is None else str(device),
    }


def throughput_path(reranker: Any) -> Path:
    """Where the measurement for `reranker` on this machine is cached."""
    identity = reranker.scoring_identity()
    key = json.dumps({"identity": identity, "machine": machine_descriptor(reranker)}, sort_keys=True, default=repr)
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    return cache_dir("throughput") / f"{reranker.config.backend}-{digest}.json"


def throughput_model(reranker: Any, refresh: bool = False, **measure_kwargs: Any) -> ThroughputModel:
    """The cached `ThroughputModel` of `reranker` on this machine, measured on first use."""
    path = throughput_path(reranker)
    if path.is_file() and not refresh:
        try:
            return ThroughputModel.from_dict(json.loads(path.read_text(encoding="utf-8"))["model"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("throughput measurement %s is unreadable (%s); measuring again", path, exc)
    model = measure_throughput(reranker, **measure_kwargs)
    record = {"identity": reranker.scoring_identity(), "machine": machine_descriptor(reranker), "model": model.to_dict()}
    atomic_write_text(path, json.dumps(record, indent=2, default=repr))  # a concurrent reader sees the old file or the new one
    return model


__all__ = ["ThroughputModel", "machine_descriptor", "measure_throughput", "pair_lengths", "throughput_model", "throughput_path"]
