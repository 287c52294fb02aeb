"""Cross-request dynamic batching: requests that arrive together are scored by ONE `rank_many`
call, in a worker thread, and each request gets exactly its own results back.

A batch opens when a request arrives and closes `max_wait_ms` after that request arrived, or as
soon as it holds `max_batch_pairs` (query, document) pairs; a request larger than the bound is
scored alone. One worker thread per model scores one batch at a time (CPU inference does not
gain from two at once, and not every tokenizer is thread-safe); requests that arrive meanwhile
queue up and form the next batch, so the wait only costs latency when the model is idle. The
event loop only moves requests in and results out: it never runs inference.

A failing batch does not fail its neighbours: when `rank_many` raises, or (with
`on_error: fallback`) falls back, for a batch of several requests, each request is scored again
on its own, so only the request that fails gets the error or the fallback order.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from rankbridge.rerankers.core.base import Reranker
from rankbridge.rerankers.core.types import Candidate, RankedResults

logger = logging.getLogger(__name__)

BatchObserver = Callable[[int, int], None]  # (requests, pairs) of each scored batch


@dataclass
class _Job:
    query: str
    candidates: list[Candidate]
    future: asyncio.Future
    arrived: float  # loop time

    @property
    def pairs(self) -> int:
        return len(self.candidates)


@dataclass
class BatchStats:
    """What the batcher has done, for tests and logs."""

    batches: int = 0
    requests: int = 0
    pairs: int = 0
    rescored_alone: int = 0
    sizes: list[int] = field(default_factory=list)  # requests per batch, the last 1000


class DynamicBatcher:
    """Collects `submit`ted requests for one reranker into `rank_many` batches.

    Args:
        reranker: the model; only the batcher's worker thread calls it.
        max_batch_pairs: most (query, document) pairs in one batch.
        max_wait_ms: how long a batch stays open after its first request arrived.
        enabled: False scores every request on its own (same thread, same results): the
            "batching off" baseline.
        observe: called with (requests, pairs) after each batch, e.g. for metrics.

    Example:
        >>> import asyncio
        >>> from rankbridge.rerankers import load_reranker
        >>> async def demo():
        ...     batcher = DynamicBatcher(load_reranker("lexical"), max_wait_ms=50)
        ...     async with batcher:
        ...         a, b = await asyncio.gather(
        ...             batcher.submit("red fruit", [Candidate("a red apple"), Candidate("blue sky")]),
        ...             batcher.submit("sky color", [Candidate("green grass"), Candidate("the sky is blue")]))
        ...     return a.indices, b.indices, batcher.stats.batches
        >>> asyncio.run(demo())
        ([0, 1], [1, 0], 1)
    """

    def __init__(
        self,
        reranker: Reranker,
        *,
        max_batch_pairs: int = 1024,
        max_wait_ms: float = 2.0,
        enabled: bool = True,
        observe: BatchObserver | None = None,
        name: str = "",
    ):
        if max_batch_pairs < 1:
            raise ValueError(f"max_batch_pairs must be >= 1, got {max_batch_pairs}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        self.reranker = reranker
        self.max_batch_pairs = max_batch_pairs
        self.max_wait_s = max_wait_ms / 1000.0
        self.enabled = enabled
        self.name = name or reranker.config.backend
        self.stats = BatchStats()
        self._observe = observe
        self._queue: collections.deque[_Job] = collections.deque()
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._closing = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._task is not None:
            return
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"rankbridge-batch-{self.name}")
        self._task = asyncio.create_task(self._run(), name=f"rankbridge-batcher-{self.name}")

    async def close(self) -> None:
        """Score what is queued, then stop. Requests submitted after this are refused."""
        if self._task is None:
            return
        self._closing = True
        assert self._wakeup is not None
        self._wakeup.set()
        await self._task
        self._task = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def __aenter__(self) -> DynamicBatcher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ requests

    async def submit(self, query: str, candidates: list[Candidate]) -> RankedResults:
        """Score `candidates` for `query` (all of them, best first) in the next batch."""
        if self._task is None or self._closing:
            raise RuntimeError(f"the batcher for '{self.name}' is not running")
        loop = asyncio.get_running_loop()
        job = _Job(query, list(candidates), loop.create_future(), loop.time())
        self._queue.append(job)
        assert self._wakeup is not None
        self._wakeup.set()
        return await job.future  # cancelled with the request: the batch skips it

    @property
    def queued(self) -> int:
        return len(self._queue)

    # ------------------------------------------------------------------ the loop

    async def _next_job(self, deadline: float | None) -> _Job | None:
        """The next live job; waits until `deadline` (loop time; None: forever). None when the
        deadline passed, or when closing with nothing queued."""
        loop = asyncio.get_running_loop()
        assert self._wakeup is not None
        while True:
            while self._queue:
                job = self._queue.popleft()
                if not job.future.done():
                    return job
            if self._closing:
                return None
            self._wakeup.clear()
            if deadline is None:
                await self._wakeup.wait()
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        carried: _Job | None = None
        while True:
            first = carried or await self._next_job(None)
            carried = None
            if first is None:
                return  # closing and drained
            batch, pairs = [first], first.pairs
            if self.enabled:
                deadline = first.arrived + self.max_wait_s
                while pairs < self.max_batch_pairs:
                    job = await self._next_job(deadline)
                    if job is None:
                        break
                    if pairs + job.pairs > self.max_batch_pairs:
                        carried = job  # opens the next batch
                        break
                    batch.append(job)
                    pairs += job.pairs
            batch = [j for j in batch if not j.future.done()]
            if not batch:
                continue
            try:
                outcomes = await loop.run_in_executor(self._executor, self._score, batch)
            except Exception as exc:  # the executor itself failed: answer, never hang a request
                outcomes = [exc] * len(batch)
            for job, outcome in zip(batch, outcomes):
                if job.future.done():
                    continue
                if isinstance(outcome, BaseException):
                    job.future.set_exception(outcome)
                else:
                    job.future.set_result(outcome)

    # ------------------------------------------------------------------ the worker thread

    def _score(self, batch: list[_Job]) -> list[RankedResults | BaseException]:
        stats = self.stats
        stats.batches += 1
        stats.requests += len(batch)
        stats.pairs += sum(j.pairs for j in batch)
        stats.sizes.append(len(batch))
        del stats.sizes[:-1000]
        if self._observe is not None:
            try:
                self._observe(len(batch), sum(j.pairs for j in batch))
            except Exception:  # metrics must never fail a request
                logger.exception("batch observer failed")
        try:
            results = self.reranker.rank_many([j.query for j in batch], [j.candidates for j in batch])
        except Exception as exc:
            if len(batch) == 1:
                return [exc]
            logger.info("a batch of %d requests failed (%s); scoring each alone", len(batch), exc)
            return self._alone(batch)
        if len(batch) > 1 and any(r.fallback_reason for r in results):
            return self._alone(batch)
        return list(results)

    def _alone(self, batch: list[_Job]) -> list[RankedResults | BaseException]:
        self.stats.rescored_alone += len(batch)
        out: list[RankedResults | BaseException] = []
        for job in batch:
            try:
                out.append(self.reranker.rank(job.query, job.candidates))
            except Exception as exc:
                out.append(exc)
        return out
