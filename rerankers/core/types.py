"""Typed values that cross the one reranking interface: candidates in, ranked results out."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, overload


@dataclass
class Candidate:
    """One thing to rerank: a passage of text, a page image, or both.

    Args:
        text: the passage text (what a text reranker reads).
        id: the caller's identifier; `RankedResults.ids` falls back to the input index.
        metadata: free-form payload carried through untouched.
        image: a page image for page rerankers: a PIL image, a file path, raw bytes,
            or a base64 string (optionally a ``data:image/...;base64,`` URL).
        score: the first-stage score (higher is better), used by the `identity` backend,
            by the `fallback` error policy and by `fuse_first_stage`.

    Example:
        >>> Candidate(text="Paris is the capital of France.", id="doc-7", score=12.3).id
        'doc-7'
    """

    text: str | None = None
    id: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)
    image: Any = None
    score: float | None = None

    @property
    def has_text(self) -> bool:
        return self.text is not None

    @property
    def has_image(self) -> bool:
        return self.image is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form. An in-memory image (PIL, bytes) is not serialized; a path or
        base64 string is kept. A non-finite float (in `score` or anywhere in `metadata`) is
        written as the string ``"nan"``, ``"inf"`` or ``"-inf"``: the output is valid JSON.

        Example:
            >>> Candidate(text="a", score=float("inf")).to_dict()["score"]
            'inf'
        """
        data: dict[str, Any] = {
            "text": self.text,
            "id": _json_safe(self.id),
            "metadata": _json_safe(dict(self.metadata)),
            "score": _json_safe(self.score),
        }
        if isinstance(self.image, str):
            data["image"] = self.image
        elif self.image is not None:
            data["image"] = None
            data["image_omitted"] = type(self.image).__name__
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Candidate:
        return cls(
            text=data.get("text"),
            id=data.get("id"),
            metadata=dict(data.get("metadata") or {}),
            image=data.get("image"),
            score=_float_or_none(data.get("score")),
        )


@dataclass
class RankedResult:
    """One candidate after reranking.

    Attributes:
        candidate: the input candidate (the same object that was passed in, or the
            `Candidate` made from an input string).
        index: its position in the input list.
        score: the backend's raw number (a logit, a BM25 score, a rank-derived value...).
        relevance: calibrated to [0, 1] so one threshold can be used across backends.
        rank: 0-based position in the output (0 is best).
        fallback_reason: None, unless the backend failed and the `fallback` policy kept
            the first-stage order; then it says why.
    """

    candidate: Candidate
    index: int
    score: float
    relevance: float
    rank: int
    fallback_reason: str | None = None

    @property
    def id(self) -> Any:
        """The candidate's id, or its input index when it was given without one."""
        return self.index if self.candidate.id is None else self.candidate.id

    @property
    def text(self) -> str | None:
        return self.candidate.text

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate.to_dict(),
            "index": self.index,
            "score": _json_float(self.score),
            "relevance": _json_float(self.relevance),
            "rank": self.rank,
            "fallback_reason": self.fallback_reason,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RankedResult:
        return cls(
            candidate=Candidate.from_dict(data["candidate"]),
            index=int(data["index"]),
            score=float(data["score"]),
            relevance=float(data["relevance"]),
            rank=int(data["rank"]),
            fallback_reason=data.get("fallback_reason"),
        )


class RankedResults(Sequence[RankedResult]):
    """The ranked list for one query, best first.

    Example:
        >>> from rankbridge.rerankers import load_reranker
        >>> results = load_reranker("lexical").rank("capital of france", ["Bananas.", "Paris is the capital of France."])
        >>> results.ids
        [1, 0]
    """

    def __init__(self, results: Sequence[RankedResult] = (), query: str | None = None, num_candidates: int | None = None):
        self._results = list(results)
        self.query = query
        self.num_candidates = len(self._results) if num_candidates is None else num_candidates
        # What a rerank service billed for this list (e.g. search_units, total_tokens, requests),
        # set by the remote backends; None for everything else.
        self.usage: dict[str, float] | None = None

    @overload
    def __getitem__(self, item: int) -> RankedResult: ...

    @overload
    def __getitem__(self, item: slice) -> list[RankedResult]: ...

    def __getitem__(self, item):
        return self._results[item]

    def __len__(self) -> int:
        return len(self._results)

    def __iter__(self) -> Iterator[RankedResult]:
        return iter(self._results)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RankedResults):
            return self._results == other._results and self.query == other.query
        if isinstance(other, list):
            return self._results == other
        return NotImplemented

    def __repr__(self) -> str:
        return f"RankedResults(query={self.query!r}, ids={self.ids!r})"

    @property
    def ids(self) -> list[Any]:
        return [r.id for r in self._results]

    @property
    def indices(self) -> list[int]:
        return [r.index for r in self._results]

    @property
    def scores(self) -> list[float]:
        return [r.score for r in self._results]

    @property
    def relevances(self) -> list[float]:
        return [r.relevance for r in self._results]

    @property
    def candidates(self) -> list[Candidate]:
        return [r.candidate for r in self._results]

    @property
    def fallback_reason(self) -> str | None:
        """Why the backend's ranking was replaced by the first-stage order, if it was."""
        return next((r.fallback_reason for r in self._results if r.fallback_reason), None)

    def top(self, n: int) -> RankedResults:
        """The best `n` results (all of them if there are fewer); the usage stays that of the whole list."""
        top = RankedResults(self._results[:n], query=self.query, num_candidates=self.num_candidates)
        top.usage = None if self.usage is None else dict(self.usage)
        return top

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: the query, the count, every result and, from a rerank service, its usage.

        Example:
            >>> r = RankedResults([], query="q")
            >>> r.usage = {"search_units": 1}
            >>> RankedResults.from_dict(r.to_dict()).usage
            {'search_units': 1}
        """
        data: dict[str, Any] = {
            "query": self.query,
            "num_candidates": self.num_candidates,
            "results": [r.to_dict() for r in self._results],
        }
        if self.usage is not None:
            data["usage"] = _json_safe(dict(self.usage))
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RankedResults:
        results = cls(
            [RankedResult.from_dict(r) for r in data.get("results", [])],
            query=data.get("query"),
            num_candidates=data.get("num_candidates"),
        )
        if data.get("usage") is not None:
            results.usage = dict(data["usage"])
        return results


def _json_float(value: float) -> float | str:
    # JSON has no inf/nan; keep them readable instead of producing invalid JSON.
    value = float(value)
    if math.isfinite(value):
        return value
    return str(value)


def _json_safe(value: Any) -> Any:
    """`value` with every non-finite float (nested in dicts, lists and tuples) as its string."""
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        return value if math.isfinite(float(value)) else str(float(value))
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _float_or_none(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lower() in ("nan", "inf", "-inf", "infinity", "-infinity"):
        return float(value)
    return value
