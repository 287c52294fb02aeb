"""The one reranking interface. Every invariant of a ranked result is enforced here, once.

A backend implements one batched method, `_score_batch(queries, candidate_lists)` (and
`_ascore_batch` where it has real async I/O); it returns, per query, one raw score and one
relevance per candidate, in input order. `rank`, `arank` and `rank_many` all go through it.
Everything else — input checks, empty input, mapping back by index, stable ordering,
`top_n` / `score_threshold`, the error policy and first-stage fusion — lives in this class.
"""

from __future__ import annotations

import asyncio
import logging
import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any, ClassVar, Union

import numpy as np

from rankbridge.rerankers.core.calibration import fuse, minmax, rank_relevance
from rankbridge.rerankers.core.config import RerankerConfig, validate_config
from rankbridge.rerankers.core.errors import (
    BackendError,
    CandidateError,
    ConfigError,
    MissingDependencyError,
    QueryError,
)
from rankbridge.rerankers.core.types import Candidate, RankedResult, RankedResults

logger = logging.getLogger(__name__)

CandidateLike = Union[str, Candidate]



# Errors that describe the caller's input or installation: never hidden by `on_error: fallback`.
_NOT_RUNTIME_FAILURES = (CandidateError, QueryError, ConfigError, MissingDependencyError)


@dataclass
class Scores:
    """What a backend returns for one query: a raw score and a relevance in [0, 1] per
    candidate, in the order the candidates were given."""

    scores: Sequence[float]
    relevance: Sequence[float]


class Reranker(ABC):
    """Base class of every backend.

    Subclasses set `name`, `config_class`, `accepts_text` / `accepts_images`, and implement
    `_score_batch` (one batched primitive; `_ascore_batch` too where the backend has real
    async I/O). Construct one directly with config fields as keyword arguments, or through
    `load_reranker`.

    Example:
        >>> from rankbridge.rerankers import load_reranker
        >>> reranker = load_reranker("lexical")
        >>> [r.index for r in reranker.rank("capital of france", ["Bananas.", "Paris, capital of France."])]
        [1, 0]
    """

    name: ClassVar[str] = ""
    config_class: ClassVar[type[RerankerConfig]] = RerankerConfig
    accepts_text: ClassVar[bool] = True
    accepts_images: ClassVar[bool] = False

    def __init__(self, config: RerankerConfig | dict[str, Any] | None = None, **kwargs: Any):
        if isinstance(config, RerankerConfig):
            data = config.model_dump(exclude_unset=True)
            data["backend"] = config.backend
        else:
            data = dict(config or {})
        data.update(kwargs)
        data.setdefault("backend", self.name)
        self.config = validate_config(self.config_class, data["backend"], data)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.config.model_dump(exclude_defaults=True).items())
        return f"{type(self).__name__}({fields})"

    # ------------------------------------------------------------------ backend hooks

    @abstractmethod
    def _score_batch(self, queries: list[str], candidate_lists: list[list[Candidate]]) -> list[Scores]:
        """Score every candidate of every query: one `Scores` per query, in order. Called only
        with non-empty, checked candidate lists. The one scoring primitive of a backend."""

    async def _ascore_batch(self, queries: list[str], candidate_lists: list[list[Candidate]]) -> list[Scores]:
        """Async scoring. The default runs `_score_batch` in a worker thread so the event loop is
        never blocked; HTTP backends override this with real async I/O."""
        return await asyncio.to_thread(self._score_batch, queries, candidate_lists)

    def check_candidate(self, index: int, candidate: Candidate) -> None:
        """Raise `CandidateError` naming `index` if this backend cannot score `candidate`."""
        if not candidate.has_text and not candidate.has_image:
            raise CandidateError(f"candidate {index} has neither text nor image", index=index)
        if self.accepts_text and not self.accepts_images and not candidate.has_text:
            raise CandidateError(
                f"candidate {index} is an image without text, but backend '{self.config.backend}' "
                "scores text only; use a page backend (vlm-page, ocr-page) for images",
                index=index,
            )
        if self.accepts_images and not self.accepts_text and not candidate.has_image:
            raise CandidateError(
                f"candidate {index} has no image, but backend '{self.config.backend}' scores page images only",
                index=index,
            )

    def close(self) -> None:
        """Release resources (HTTP connections, model memory). The default does nothing."""

    async def aclose(self) -> None:
        self.close()

    def __enter__(self) -> Reranker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Reranker:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ public interface

    def rank(
        self,
        query: str,
        candidates: Sequence[CandidateLike],
        top_n: int | None = None,
        score_threshold: float | None = None,
    ) -> RankedResults:
        """Rerank `candidates` for `query`, best first.

        Args:
            query: the query text.
            candidates: strings or `Candidate`s. Every one is accounted for: it is in the
                result unless `top_n` or `score_threshold` removes it.
            top_n: keep only the best `top_n` (a positive int), or all when None.
            score_threshold: drop results whose `relevance` (calibrated, in [0, 1]) is below it.

        Returns:
            `RankedResults`, sorted by score descending; ties keep input order.

        Example:
            >>> from rankbridge.rerankers import load_reranker
            >>> load_reranker("lexical").rank("capital of france", ["Bananas.", "Paris is the capital of France."]).ids
            [1, 0]
        """
        prepared = self._prepare(query, candidates, top_n, score_threshold)
        if not prepared:
            return RankedResults([], query=query)
        try:
            scores = self._checked(self._one(self._scored([query], [prepared])), len(prepared))
        except _NOT_RUNTIME_FAILURES:
            raise
        except Exception as exc:
            return self._on_failure(query, prepared, exc, top_n, score_threshold)
        return self._finish(query, prepared, scores, top_n, score_threshold)

    async def arank(
        self,
        query: str,
        candidates: Sequence[CandidateLike],
        top_n: int | None = None,
        score_threshold: float | None = None,
    ) -> RankedResults:
        """Async `rank` with the same contract: real async I/O for HTTP backends, a worker
        thread for in-process models, so the event loop is never blocked."""
        prepared = self._prepare(query, candidates, top_n, score_threshold)
        if not prepared:
            return RankedResults([], query=query)
        try:
            scores = self._checked(self._one(await self._ascored([query], [prepared])), len(prepared))
        except _NOT_RUNTIME_FAILURES:
            raise
        except Exception as exc:
            return self._on_failure(query, prepared, exc, top_n, score_threshold)
        return self._finish(query, prepared, scores, top_n, score_threshold)

    def rank_many(
        self,
        queries: Sequence[str],
        candidate_lists: Sequence[Sequence[CandidateLike]],
        top_n: int | None = None,
        score_threshold: float | None = None,
    ) -> list[RankedResults]:
        """Rerank several queries at once; backends share batches across queries where they can.

        Returns one `RankedResults` per query, in the order of `queries`. A failure of one
        query's scores (NaN, too few) follows `on_error` for that query alone.
        """
        queries = _as_list("queries", queries)
        candidate_lists = _as_list("candidate_lists", candidate_lists)
        if len(queries) != len(candidate_lists):
            raise ValueError(
                f"rank_many got {len(queries)} queries but {len(candidate_lists)} candidate lists; they must pair up"
            )
        prepared = [self._prepare(q, c, top_n, score_threshold) for q, c in zip(queries, candidate_lists)]
        work = [i for i, p in enumerate(prepared) if p]
        out = [RankedResults([], query=q) for q in queries]
        if not work:
            return out
        try:
            all_scores = self._scored([queries[i] for i in work], [prepared[i] for i in work])
            if not isinstance(all_scores, (list, tuple)) or len(all_scores) != len(work):
                got = len(all_scores) if isinstance(all_scores, (list, tuple)) else type(all_scores).__name__
                raise BackendError(f"backend '{self.config.backend}' returned {got} score lists for {len(work)} queries")
        except _NOT_RUNTIME_FAILURES:
            raise
        except Exception as exc:
            for i in work:
                out[i] = self._on_failure(queries[i], prepared[i], exc, top_n, score_threshold)
            return out
        for i, scores in zip(work, all_scores):
            try:
                checked = self._checked(scores, len(prepared[i]))
            except BackendError as exc:
                out[i] = self._on_failure(queries[i], prepared[i], exc, top_n, score_threshold)
                continue
            out[i] = self._finish(queries[i], prepared[i], checked, top_n, score_threshold)
        return out

    # ------------------------------------------------------------------ shared machinery

    def _scored(self, queries: list[str], candidate_lists: list[list[Candidate]]) -> list[Scores]:
        """`_score_batch` behind the score cache, when `cache` is on."""
        cache = self._score_cache()
        if cache is None:
            return self._score_batch(queries, candidate_lists)
        return cache.score_batch(queries, candidate_lists, self._score_batch)

    async def _ascored(self, queries: list[str], candidate_lists: list[list[Candidate]]) -> list[Scores]:
        cache = self._score_cache()
        if cache is None:
            return await self._ascore_batch(queries, candidate_lists)
        return await cache.ascore_batch(queries, candidate_lists, self._ascore_batch)

    def _score_cache(self) -> Any:
        if self.config.cache == "none":
            return None
        cache = self.__dict__.get("_rankbridge_score_cache")
        if cache is None:
            from rankbridge.rerankers.core.cache import ScoreCache

            cache = self.__dict__["_rankbridge_score_cache"] = ScoreCache.for_reranker(self)
        return cache

    def cache_stats(self) -> Any:
        """The score cache's `CacheStats` (`hits`, `misses`, `hit_rate`, counted per candidate), or
        None when `cache` is `none`."""
        cache = self._score_cache()
        return None if cache is None else cache.stats

    def scores_are_pointwise(self) -> bool:
        """Whether a candidate's raw score and relevance depend only on (query, candidate text or
        image), never on the other candidates of the list. Then the score cache keys candidates one
        by one and a partial hit scores only the misses; otherwise (the safe default: BM25 with IDF
        over the list, rank-derived or min-max relevance) it keys whole lists."""
        return False

    def scoring_identity(self) -> dict[str, Any]:
        """What determines this backend's raw scores, for the score cache's key: the backend name,
        every config field that can change a score, and `model_fingerprint()`."""
        fields = self.config.model_dump(mode="json", exclude=set(self.config.NOT_SCORE_FIELDS))
        return {"backend": self.config.backend, "config": fields, "model": self.model_fingerprint()}

    def model_fingerprint(self) -> str:
        """A content hash of the model this backend scores with ("" for model-free backends).
        Backends with weights override this so a changed model file never returns stale scores."""
        return ""

    def _one(self, batch: list[Scores]) -> Scores:
        if not isinstance(batch, (list, tuple)) or len(batch) != 1:
            got = len(batch) if isinstance(batch, (list, tuple)) else type(batch).__name__
            raise BackendError(f"backend '{self.config.backend}' returned {got} score lists for 1 query")
        return batch[0]

    def _checked(self, scores: Any, n: int) -> Scores:
        """A backend's `Scores` for `n` candidates as float arrays, or a `BackendError` (a run-time
        failure, so `on_error: fallback` handles it): not a `Scores`, the wrong number of values,
        a value that is not a real number, or a raw score or relevance that is NaN or infinite."""
        backend = self.config.backend
        if not isinstance(scores, Scores):
            raise BackendError(f"backend '{backend}' returned a {type(scores).__name__} instead of Scores")
        raw = _real_array(backend, "scores", scores.scores)
        rel = _real_array(backend, "relevances", scores.relevance)
        if raw.shape != (n,) or rel.shape != (n,):
            raise BackendError(
                f"backend '{backend}' returned {raw.size} scores and {rel.size} relevances for {n} candidates"
            )
        for name, values in (("score", raw), ("relevance", rel)):
            bad = np.flatnonzero(~np.isfinite(values))
            if bad.size:
                i = int(bad[0])
                raise BackendError(f"backend '{backend}' returned {name} {values[i]} for candidate {i}; expected a finite number")
        return Scores(scores=raw, relevance=np.clip(rel, 0.0, 1.0))

    def _prepare(
        self,
        query: str,
        candidates: Sequence[CandidateLike],
        top_n: int | None,
        score_threshold: float | None,
    ) -> list[Candidate]:
        if not isinstance(query, str):
            raise TypeError(f"query must be a string, got {type(query).__name__}")
        if not _encodable(query):
            raise ValueError("query contains a lone surrogate (not valid Unicode text); it cannot be encoded as UTF-8")
        _check_top_n(top_n)
        _check_threshold(score_threshold)
        if isinstance(candidates, (str, bytes, bytearray, Candidate)):
            raise TypeError("candidates must be a list of strings or Candidates, not a single item")
        if isinstance(candidates, (Mapping, AbstractSet)):
            raise TypeError(
                f"candidates must be an ordered sequence of strings or Candidates, not a {type(candidates).__name__} "
                "(a mapping would rank its keys, a set has no order)"
            )
        prepared: list[Candidate] = []
        fuse = self.config.fuse_first_stage is not None
        for i, item in enumerate(candidates):
            if isinstance(item, Candidate):
                cand = item
            elif isinstance(item, str):
                cand = Candidate(text=item)
            else:
                raise CandidateError(
                    f"candidate {i} is a {type(item).__name__}; expected a str or a Candidate", index=i
                )
            _check_fields(i, cand)
            if fuse and cand.score is None:
                raise CandidateError(
                    f"fuse_first_stage needs a first-stage score on every candidate; candidate {i} has none", index=i
                )
            self.check_candidate(i, cand)
            prepared.append(cand)
        return prepared

    def _finish(
        self,
        query: str,
        candidates: list[Candidate],
        scores: Scores,
        top_n: int | None,
        score_threshold: float | None,
        fallback_reason: str | None = None,
    ) -> RankedResults:
        # `scores` is checked (`_checked`) or the first-stage order: n finite values each.
        n = len(candidates)
        raw = np.asarray(scores.scores, dtype=np.float64)
        rel = np.clip(np.asarray(scores.relevance, dtype=np.float64), 0.0, 1.0)
        weight = self.config.fuse_first_stage
        if weight is not None and fallback_reason is None:
            first_raw = np.asarray([float(c.score) for c in candidates], dtype=np.float64)
            rel = np.clip(fuse(weight, self.config.fusion_mode, rel, raw, first_raw), 0.0, 1.0)
            # Order by fused relevance; break its ties by the raw score only when the reranker
            # has a say, then by the first-stage score itself (min-max can round two close
            # scores of a wide range to one value), so weight 0 reproduces the first-stage order exactly.
            keys = (np.arange(n), -first_raw, -raw * (weight > 0), -rel)
        else:
            keys = (np.arange(n), -raw)
        order = np.lexsort(keys)
        results: list[RankedResult] = []
        for idx in order:
            relevance = float(rel[idx])
            if score_threshold is not None and relevance < score_threshold:
                continue
            results.append(
                RankedResult(
                    candidate=candidates[idx],
                    index=int(idx),
                    score=float(raw[idx]),
                    relevance=relevance,
                    rank=len(results),
                    fallback_reason=fallback_reason,
                )
            )
            if top_n is not None and len(results) >= top_n:
                break
        return RankedResults(results, query=query, num_candidates=n)

    def _on_failure(
        self,
        query: str,
        candidates: list[Candidate],
        exc: Exception,
        top_n: int | None,
        score_threshold: float | None,
    ) -> RankedResults:
        reason = f"{type(exc).__name__}: {exc}"
        if self.config.on_error == "raise":
            if isinstance(exc, BackendError):
                raise exc
            raise BackendError(f"backend '{self.config.backend}' failed: {reason}") from exc
        logger.warning(
            "backend '%s' failed (%s); on_error=fallback keeps the first-stage order for %d candidates",
            self.config.backend,
            reason,
            len(candidates),
        )
        return self._finish(
            query, candidates, first_stage_scores(candidates), top_n, score_threshold, fallback_reason=reason
        )


def first_stage_scores(candidates: Sequence[Candidate]) -> Scores:
    """First-stage order as `Scores`: by `Candidate.score` when every candidate has a finite
    number there (relevance min-max scaled), else input order (relevance rank-derived). Never
    raises on a score: this is what `on_error: fallback` falls back to."""
    values = [finite_score(c.score) for c in candidates]
    if values and all(v is not None for v in values):
        return Scores(scores=values, relevance=minmax(values))
    n = len(candidates)
    return Scores(scores=[float(n - i) for i in range(n)], relevance=rank_relevance(n))


def finite_score(value: Any) -> float | None:
    """`value` as a float when it is a finite real number (not a bool), else None.

    Example:
        >>> finite_score(3), finite_score(float("nan")), finite_score("0.5"), finite_score(True)
        (3.0, None, None, None)
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    try:
        number = float(value)
    except (OverflowError, ValueError, TypeError):
        return None
    return number if math.isfinite(number) else None


def rank_derived_scores(order: Sequence[int]) -> Scores:
    """`Scores` for a backend whose output is an order (listwise): the candidate at position
    p of `order` gets score n - p and relevance 1 - p / n."""
    n = len(order)
    positions = np.empty(n, dtype=np.int64)
    positions[np.asarray(order, dtype=np.int64)] = np.arange(n)
    return Scores(scores=(n - positions).astype(np.float64), relevance=rank_relevance(n)[positions])


def _check_top_n(top_n: Any) -> None:
    if top_n is None:
        return
    if isinstance(top_n, bool) or not isinstance(top_n, (int, np.integer)) or top_n <= 0:
        raise ValueError(f"top_n must be a positive int or None, got {top_n!r}")


def _check_threshold(threshold: Any) -> None:
    if threshold is None:
        return
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, numbers.Real)
        or not 0.0 <= float(threshold) <= 1.0  # also False for NaN
    ):
        raise ValueError(f"score_threshold must be a number in [0, 1] or None, got {threshold!r}")


def _as_list(name: str, value: Any) -> list:
    if isinstance(value, (str, bytes, bytearray, Mapping, AbstractSet)) or not hasattr(value, "__iter__"):
        raise TypeError(f"rank_many: {name} must be a list (one item per query), not a {type(value).__name__}")
    return list(value)


def _encodable(text: str) -> bool:
    """False for text with a lone surrogate, which no tokenizer or server can take as UTF-8."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_fields(index: int, candidate: Candidate) -> None:
    """The candidate's own fields, whatever the backend: text is a str (valid Unicode) or None;
    the first-stage score is None or a finite real number."""
    text = candidate.text
    if text is not None:
        if not isinstance(text, str):
            raise CandidateError(
                f"candidate {index} has text of type {type(text).__name__}; expected a str (decode bytes first)",
                index=index,
            )
        if not _encodable(text):
            raise CandidateError(
                f"candidate {index} has text with a lone surrogate (not valid Unicode); it cannot be encoded as UTF-8",
                index=index,
            )
    score = candidate.score
    if score is not None and finite_score(score) is None:
        raise CandidateError(
            f"candidate {index} has first-stage score {score!r} ({type(score).__name__}); "
            "expected a finite number or None",
            index=index,
        )


def _real_array(backend: str, what: str, values: Any) -> np.ndarray:
    """Backend output as a 1-d float64 array; anything that is not real numbers is a BackendError."""
    if values is None or isinstance(values, (str, bytes)):
        raise BackendError(f"backend '{backend}' returned {what} of type {type(values).__name__}; expected numbers")
    try:
        array = np.asarray(values if isinstance(values, np.ndarray) else list(values))
    except (TypeError, ValueError) as exc:
        raise BackendError(f"backend '{backend}' returned {what} that are not numbers: {exc}") from None
    if array.dtype.kind not in "iuf" or array.ndim != 1:
        sample = next((v for v in array.ravel() if not isinstance(v, numbers.Real) or isinstance(v, bool)), None)
        shown = f" (e.g. {sample!r})" if sample is not None else ""
        raise BackendError(
            f"backend '{backend}' returned {what} of dtype {array.dtype} and shape {array.shape}{shown}; "
            "expected one real number per candidate"
        )
    return array.astype(np.float64, copy=False)


__all__ = ["QueryError", "Reranker", "Scores", "finite_score", "first_stage_scores", "rank_derived_scores"]
