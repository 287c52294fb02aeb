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
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Union

import numpy as np

from rankbridge.rerankers.core.calibration import minmax, rank_relevance
from rankbridge.rerankers.core.config import RerankerConfig, validate_config
from rankbridge.rerankers.core.errors import BackendError, CandidateError, ConfigError, MissingDependencyError
from rankbridge.rerankers.core.types import Candidate, RankedResult, RankedResults

logger = logging.getLogger(__name__)

CandidateLike = Union[str, Candidate]

# Errors that describe the caller's input or installation: never hidden by `on_error: fallback`.
_NOT_RUNTIME_FAILURES = (CandidateError, ConfigError, MissingDependencyError)


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
            scores = self._one(self._scored([query], [prepared]))
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
            scores = self._one(await self._ascored([query], [prepared]))
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

        Returns one `RankedResults` per query, in the order of `queries`.
        """
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
        except _NOT_RUNTIME_FAILURES:
            raise
        except Exception as exc:
            for i in work:
                out[i] = self._on_failure(queries[i], prepared[i], exc, top_n, score_threshold)
            return out
        if len(all_scores) != len(work):
            raise BackendError(
                f"backend '{self.config.backend}' returned {len(all_scores)} score lists for {len(work)} queries"
            )
        for i, scores in zip(work, all_scores):
            out[i] = self._finish(queries[i], prepared[i], scores, top_n, score_threshold)
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
        if len(batch) != 1:
            raise BackendError(f"backend '{self.config.backend}' returned {len(batch)} score lists for 1 query")
        return batch[0]

    def _prepare(
        self,
        query: str,
        candidates: Sequence[CandidateLike],
        top_n: int | None,
        score_threshold: float | None,
    ) -> list[Candidate]:
        if not isinstance(query, str):
            raise TypeError(f"query must be a string, got {type(query).__name__}")
        _check_top_n(top_n)
        _check_threshold(score_threshold)
        if isinstance(candidates, (str, bytes, Candidate)):
            raise TypeError("candidates must be a list of strings or Candidates, not a single item")
        prepared: list[Candidate] = []
        for i, item in enumerate(candidates):
            if isinstance(item, Candidate):
                cand = item
            elif isinstance(item, str):
                cand = Candidate(text=item)
            else:
                raise CandidateError(
                    f"candidate {i} is a {type(item).__name__}; expected a str or a Candidate", index=i
                )
            self.check_candidate(i, cand)
            prepared.append(cand)
        if prepared and self.config.fuse_first_stage is not None:
            missing = [i for i, c in enumerate(prepared) if c.score is None]
            if missing:
                raise CandidateError(
                    f"fuse_first_stage needs a first-stage score on every candidate; candidate {missing[0]} has none",
                    index=missing[0],
                )
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
        n = len(candidates)
        raw = np.asarray(list(scores.scores), dtype=np.float64)
        rel = np.asarray(list(scores.relevance), dtype=np.float64)
        if raw.shape != (n,) or rel.shape != (n,):
            raise BackendError(
                f"backend '{self.config.backend}' returned {raw.size} scores and {rel.size} relevances "
                f"for {n} candidates"
            )
        bad = np.flatnonzero(np.isnan(raw) | np.isnan(rel))
        if bad.size:
            raise BackendError(f"backend '{self.config.backend}' returned NaN for candidate {int(bad[0])}")
        rel = np.clip(rel, 0.0, 1.0)
        weight = self.config.fuse_first_stage
        if weight is not None and fallback_reason is None:
            first = minmax([c.score for c in candidates])
            rel = weight * rel + (1.0 - weight) * first
            # Order by fused relevance; break its ties by the raw score only when the
            # reranker has a say, so weight 0 reproduces the first-stage order exactly.
            keys = (np.arange(n), -raw * (weight > 0), -rel)
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
    """First-stage order as `Scores`: by `Candidate.score` when every candidate has one
    (relevance min-max scaled), else input order (relevance rank-derived)."""
    values = [c.score for c in candidates]
    if values and all(v is not None and math.isfinite(v) for v in values):
        return Scores(scores=[float(v) for v in values], relevance=minmax(values))
    n = len(candidates)
    return Scores(scores=[float(n - i) for i in range(n)], relevance=rank_relevance(n))


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
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating)) or math.isnan(threshold):
        raise ValueError(f"score_threshold must be a number in [0, 1] or None, got {threshold!r}")


__all__ = ["Reranker", "Scores", "first_stage_scores", "rank_derived_scores"]
