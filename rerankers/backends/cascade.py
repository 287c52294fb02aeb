"""`cascade`: a cheap reranker over many candidates, then dearer ones over the few that survive.

    backend: cascade
    stages:
      - reranker: {backend: cross-encoder, model: minilm-l6-ce-scifact, runtime: onnx, quantize: int8}
        keep: 30
      - reranker: cross-encoder:minilm-l6-ce-scifact
    budget_ms: 150          # optional: the last stage sees as many of the 30 as fit in 150 ms

Each stage reranks the survivors of the one before, which it receives in that stage's order (so a
tie in a later stage keeps the earlier stage's order). The final order is the last stage's order
for its survivors, then the candidates each earlier stage dropped, latest stage first, each group
in the order of the stage that dropped it. Every candidate is accounted for, by index (duplicates
stay distinct). A candidate's `relevance` is that of the last stage that scored it, and the result
records which stage that was (`CascadeResult.stage`, with that stage's raw score in `stage_score`);
`score` is rank-derived (n - final position), since raw scores of different stages do not compare.
`CascadeResults.depths` says how many candidates each stage saw.

A stage that fails under its own `on_error: fallback` is skipped for that query: its input keeps
the previous stage's order and scores, and `fallback_reason` says why (a failing first stage keeps
the first-stage order). A stage failing under `on_error: raise` fails the cascade, which then
follows the cascade's own `on_error`.

`cache` on the cascade is the default of every stage whose spec does not set its own: each stage
caches its own scores, so a stage's hit is reused whatever the other stages do.

`budget_ms` bounds the last stage's time per query: from a throughput model measured once on this
machine (pairs per second by token length, cached under `$RANKBRIDGE_CACHE_DIR/throughput/`), the
last stage sees the longest prefix of the previous stage's survivors it can score within the budget.

Example:
    >>> from rankbridge.rerankers import load_reranker
    >>> cascade = load_reranker({"backend": "cascade", "stages": [
    ...     {"reranker": "lexical", "keep": 2}, {"reranker": {"backend": "lexical", "k1": 0.9}}]})
    >>> results = cascade.rank("capital of france", ["Bananas.", "Paris, capital of France.", "France."])
    >>> results.ids, [r.stage for r in results], results.depths
    ([1, 2, 0], [1, 1, 0], [3, 2])
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer, model_validator

from rankbridge.rerankers.core.base import Reranker, Scores
from rankbridge.rerankers.core.config import RerankerConfig
from rankbridge.rerankers.core.errors import BackendError, ConfigError
from rankbridge.rerankers.core.loader import load_reranker, read_spec
from rankbridge.rerankers.core.types import Candidate, RankedResult, RankedResults

logger = logging.getLogger(__name__)


class CascadeStage(BaseModel):
    """One stage of a cascade."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    reranker: str | dict[str, Any] | Reranker = Field(
        description="Any `load_reranker` spec: a shorthand (`lexical`, `cross-encoder:<model>`), a mapping "
        "with its own `backend:`, a config file path, or (in Python) a built Reranker."
    )
    keep: int | None = Field(
        None, ge=1, description="How many of this stage's best candidates go on to the next stage. Every stage but the last needs it."
    )
    min_relevance: float | None = Field(
        None, ge=0.0, le=1.0, description="Also drop candidates this stage gives a relevance below this."
    )

    @field_serializer("reranker", when_used="json")
    def _spec_as_data(self, value: Any) -> Any:
        if isinstance(value, Reranker):
            return {"backend": value.config.backend, **value.config.model_dump(mode="json", exclude={"backend"})}
        return value


class CascadeConfig(RerankerConfig):
    """Configuration of the `cascade` backend."""

    backend: Literal["cascade"] = "cascade"
    stages: list[CascadeStage] = Field(
        min_length=1,
        description="The rerankers in order, each `{reranker: SPEC, keep: N}` (SPEC: any `load_reranker` spec; "
        "`keep`: how many go on, needed by every stage but the last; optional `min_relevance`: also drop those "
        "this stage gives less); the last one `{reranker: SPEC}` ranks all that reach it. Each stage sees the "
        "survivors of the one before, in its order.",
    )
    budget_ms: float | None = Field(
        None,
        gt=0,
        description="Latency budget of the last stage per query, in ms: it sees only as many of the previous "
        "stage's survivors as it can score in this time, by a throughput model measured once on this machine "
        "(cached under $RANKBRIDGE_CACHE_DIR/throughput). The depth chosen is in `CascadeResults.depths`.",
    )

    @model_validator(mode="after")
    def _check_stages(self) -> CascadeConfig:
        for i, stage in enumerate(self.stages[:-1]):
            if stage.keep is None:
                raise ValueError(f"stage {i} needs `keep` (how many candidates go on to stage {i + 1})")
        if self.stages[-1].keep is not None:
            raise ValueError(
                f"the last stage ({len(self.stages) - 1}) ranks every candidate that reaches it; give it no "
                "`keep` (use top_n on the call to cut the result)"
            )
        return self


# ---------------------------------------------------------------------- results


@dataclass
class CascadeResult(RankedResult):
    """A `RankedResult` that says which stage ranked it.

    Attributes:
        stage: index of the last stage that scored this candidate (None when no stage did: the
            whole cascade fell back to the first-stage order).
        stage_score: that stage's raw score.
    """

    stage: int | None = None
    stage_score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "stage": self.stage, "stage_score": self.stage_score}


class CascadeResults(RankedResults):
    """`RankedResults` with `depths`: how many candidates each stage saw for this query."""

    def __init__(self, results=(), query=None, num_candidates=None, depths: list[int] | None = None):
        super().__init__(results, query=query, num_candidates=num_candidates)
        self.depths = list(depths or [])

    @property
    def depth(self) -> int | None:
        """How many candidates the last stage (the one `budget_ms` bounds) saw."""
        return self.depths[-1] if self.depths else None

    def top(self, n: int) -> CascadeResults:
        return CascadeResults(self[:n], query=self.query, num_candidates=self.num_candidates, depths=self.depths)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "depths": self.depths}


@dataclass
class _Trace:
    """What the stages did to one query's candidates (indices into its input list)."""

    order: list[int]  # final order
    stage: list[int | None]
    stage_score: list[float | None]
    relevance: list[float]
    reason: list[str | None]
    depths: list[int]


# ---------------------------------------------------------------------- the backend


class CascadeReranker(Reranker):
    """Rerank in stages: each stage reranks the previous stage's best `keep`.

    `rank_many` shares each stage's batches across queries; `arank` awaits stages with native async
    I/O (HTTP backends) directly and runs the others in a worker thread.
    """

    name = "cascade"
    config_class = CascadeConfig
    accepts_text = True
    accepts_images = True  # what a candidate needs is checked against every stage

    def __init__(self, config: CascadeConfig | dict[str, Any] | None = None, **kwargs: Any):
        super().__init__(config, **kwargs)
        cfg: CascadeConfig = self.config  # type: ignore[assignment]
        self.stages: list[Reranker] = [self._load_stage(i, s) for i, s in enumerate(cfg.stages)]
        self._throughput: Any = None
        self._traces: dict[int, tuple[list[Candidate], _Trace]] = {}
        if cfg.budget_ms is not None and not self.stages[-1].accepts_text:
            raise ConfigError(
                f"field 'budget_ms' of backend 'cascade': the last stage ('{self.stages[-1].config.backend}') scores "
                "page images; the throughput model measures text pairs"
            )

    def _load_stage(self, index: int, stage: CascadeStage) -> Reranker:
        spec = stage.reranker
        if isinstance(spec, Reranker):
            return spec
        cfg = self.config
        try:
            data = read_spec(spec)
            if cfg.cache != "none" and "cache" not in data:
                data["cache"] = cfg.cache
                data.setdefault("cache_size", cfg.cache_size)
            return load_reranker(data)
        except ConfigError as exc:
            raise ConfigError(f"field 'stages.{index}.reranker' of backend 'cascade': {exc}") from None

    # ------------------------------------------------------------------ contract

    def check_candidate(self, index: int, candidate: Candidate) -> None:
        for stage in self.stages:
            stage.check_candidate(index, candidate)

    def _score_cache(self) -> Any:
        return None  # the stages cache their own scores (see `cache` in the module docstring)

    def cache_stats(self) -> Any:
        """The stages' score-cache counts, summed (None when no stage caches)."""
        stats = [s for s in (stage.cache_stats() for stage in self.stages) if s is not None]
        if not stats:
            return None
        total = stats[0]
        for s in stats[1:]:
            total = total + s
        return total

    def set_throughput(self, model: Any) -> None:
        """Use this `ThroughputModel` for `budget_ms` instead of measuring (or reading the cached one)."""
        self._throughput = model

    def throughput(self) -> Any:
        """The last stage's `ThroughputModel` on this machine (measured once, then cached)."""
        if self._throughput is None:
            from rankbridge.rerankers.runtime.throughput import throughput_model

            self._throughput = throughput_model(self.stages[-1])
        return self._throughput

    def close(self) -> None:
        for stage in self.stages:
            stage.close()

    # ------------------------------------------------------------------ scoring

    def _score_batch(self, queries: list[str], candidate_lists: list[list[Candidate]]) -> list[Scores]:
        steps = self._pipeline(queries, candidate_lists)
        request = next(steps)
        while True:
            stage_index, qs, lists = request
            stage = self.stages[stage_index]
            ranked = stage.rank_many(qs, lists) if qs else []
            try:
                request = steps.send(ranked)
            except StopIteration as done:
                return done.value

    async def _ascore_batch(self, queries: list[str], candidate_lists: list[list[Candidate]]) -> list[Scores]:
        steps = self._pipeline(queries, candidate_lists)
        request = next(steps)
        while True:
            stage_index, qs, lists = request
            stage = self.stages[stage_index]
            if not qs:
                ranked: list[RankedResults] = []
            elif type(stage)._ascore_batch is not Reranker._ascore_batch:
                ranked = list(await asyncio.gather(*(stage.arank(q, c) for q, c in zip(qs, lists))))
            else:
                ranked = await asyncio.to_thread(stage.rank_many, qs, lists)
            try:
                request = steps.send(ranked)
            except StopIteration as done:
                return done.value

    def _pipeline(
        self, queries: list[str], candidate_lists: list[list[Candidate]]
    ) -> Generator[tuple[int, list[str], list[list[Candidate]]], list[RankedResults], list[Scores]]:
        """The cascade, independent of sync or async: yields (stage, queries, candidate lists) to
        be ranked, receives the stage's `RankedResults`, returns the cascade's `Scores`."""
        cfg: CascadeConfig = self.config  # type: ignore[assignment]
        last = len(self.stages) - 1
        states = [_QueryState(len(c)) for c in candidate_lists]
        for s, stage_cfg in enumerate(cfg.stages):
            if s == last and cfg.budget_ms is not None:
                for q, (query, cands, state) in enumerate(zip(queries, candidate_lists, states)):
                    state.apply_budget(self._budget_depth(query, [cands[i] for i in state.current]))
            work = [q for q, st in enumerate(states) if st.current]
            for st in states:
                st.depths.append(len(st.current))
            ranked = yield s, [queries[q] for q in work], [[candidate_lists[q][i] for i in states[q].current] for q in work]
            if len(ranked) != len(work):
                raise BackendError(f"cascade stage {s} returned {len(ranked)} rankings for {len(work)} queries")
            for q, result in zip(work, ranked):
                states[q].record(s, result, keep=stage_cfg.keep if s < last else None, min_relevance=stage_cfg.min_relevance)
        out: list[Scores] = []
        for cands, state in zip(candidate_lists, states):
            trace = state.trace()
            self._remember(cands, trace)
            n = len(cands)
            raw = [0.0] * n
            for position, i in enumerate(trace.order):
                raw[i] = float(n - position)
            out.append(Scores(scores=raw, relevance=trace.relevance))
        return out

    def _budget_depth(self, query: str, survivors: list[Candidate]) -> int:
        if not survivors:
            return 0
        from rankbridge.rerankers.runtime.throughput import pair_lengths

        stage = self.stages[-1]
        lengths = pair_lengths(stage, query, [c.text or "" for c in survivors])
        depth = self.throughput().depth_within(lengths, self.config.budget_ms / 1000.0)
        logger.debug("cascade: budget %.1f ms lets the last stage score %d of %d", self.config.budget_ms, depth, len(survivors))
        return depth

    # ------------------------------------------------------------------ results

    def _remember(self, candidates: list[Candidate], trace: _Trace) -> None:
        # `_finish` receives the same list object `_score_batch` did; the trace is handed over by it.
        if len(self._traces) > 10_000:  # only reachable if results were never finished
            self._traces.clear()
        self._traces[id(candidates)] = (candidates, trace)

    def _take_trace(self, candidates: list[Candidate]) -> _Trace | None:
        entry = self._traces.pop(id(candidates), None)
        return entry[1] if entry is not None and entry[0] is candidates else None

    def _finish(self, query: str, candidates: list[Candidate], scores: Scores, *args: Any, **kwargs: Any) -> RankedResults:
        trace = self._take_trace(candidates)
        base = super()._finish(query, candidates, scores, *args, **kwargs)
        results = []
        for r in base:
            stage = score = None
            reason = r.fallback_reason
            if trace is not None:
                stage, score = trace.stage[r.index], trace.stage_score[r.index]
                reason = reason or trace.reason[r.index]
            results.append(
                CascadeResult(
                    candidate=r.candidate,
                    index=r.index,
                    score=r.score,
                    relevance=r.relevance,
                    rank=r.rank,
                    fallback_reason=reason,
                    stage=stage,
                    stage_score=score,
                )
            )
        depths = trace.depths if trace is not None else []
        return CascadeResults(results, query=base.query, num_candidates=base.num_candidates, depths=depths)

    def _on_failure(self, query: str, candidates: list[Candidate], *args: Any, **kwargs: Any) -> RankedResults:
        self._take_trace(candidates)
        return super()._on_failure(query, candidates, *args, **kwargs)


class _QueryState:
    """One query's candidates as they pass through the stages."""

    def __init__(self, n: int):
        self.n = n
        self.current = list(range(n))  # the next stage's input, in the previous stage's order
        self.stage: list[int | None] = [None] * n
        self.stage_score: list[float | None] = [None] * n
        self.relevance = [0.0] * n
        self.reason: list[str | None] = [None] * n
        self.dropped: list[list[int]] = []  # per stage, in that stage's order
        self.final: list[int] = []
        self.depths: list[int] = []
        self.unscored: list[int] = []  # budget cut before any stage scored them (one-stage cascade)

    def apply_budget(self, depth: int) -> None:
        cut = self.current[depth:]
        self.current = self.current[:depth]
        if not cut:
            return
        if self.dropped:
            self.dropped[-1] = cut + self.dropped[-1]  # the previous stage's order: cut ones first
        else:
            self.unscored = cut

    def record(self, s: int, result: RankedResults, keep: int | None, min_relevance: float | None) -> None:
        given = self.current
        if len(result) != len(given) or sorted(r.index for r in result) != list(range(len(given))):
            raise BackendError(f"cascade stage {s} did not return each of its {len(given)} candidates once")
        failed = result.fallback_reason
        if failed and s > 0:
            order = list(given)  # a skipped stage: the previous stage's order and scores stand
            for i in order:
                self.reason[i] = failed
        else:
            order = [given[r.index] for r in result]
            for r in result:
                i = given[r.index]
                self.stage[i], self.stage_score[i], self.relevance[i] = s, r.score, r.relevance
                self.reason[i] = r.fallback_reason
        if keep is None:
            self.final = order
            self.current = []
            return
        kept = order[:keep]
        if min_relevance is not None:
            kept = [i for i in kept if self.relevance[i] >= min_relevance]
        chosen = set(kept)
        self.dropped.append([i for i in order if i not in chosen])
        self.current = kept

    def trace(self) -> _Trace:
        order = list(self.final)
        for group in reversed(self.dropped):
            order.extend(group)
        order.extend(self.unscored)
        if sorted(order) != list(range(self.n)):  # the rule's own invariant: never lose or repeat one
            raise BackendError("cascade lost track of a candidate; this is a bug")
        relevance = [r if math.isfinite(r) else 0.0 for r in self.relevance]
        return _Trace(order, self.stage, self.stage_score, relevance, self.reason, self.depths)


__all__ = ["CascadeConfig", "CascadeReranker", "CascadeResult", "CascadeResults", "CascadeStage"]
