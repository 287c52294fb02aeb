"""Pooled async HTTP with retries: the one mechanism behind the rerank client
(`runtime/rerank_http.py`) and the OpenAI-compatible chat client (`llm_rankers/engines/openai_http.py`).

- `LoopPools`: one `httpx.AsyncClient` (connection pool) and one concurrency semaphore per event
  loop, so a client object works from any loop (the caller's, or a private `BackgroundLoop`).
- `send`: one HTTP attempt; a timeout or connection error becomes `Retryable`.
- `with_retries`: run attempts under the semaphore and a per-attempt timeout, retrying `Retryable`
  failures with exponential backoff and jitter (`RetryPolicy`), honouring the server's wait
  (`retry_after_seconds`); after the last attempt `GaveUp` says why, for the caller to word.

httpx is imported only when a request is made.

Example:
    >>> policy = RetryPolicy(max_retries=2, backoff=0.5, max_backoff=8.0)
    >>> policy.delay(1, retry_after=2.0), policy.delay(1, retry_after=600.0)
    (2.0, 60.0)
    >>> 0.5 <= policy.delay(2, retry_after=None) < 1.0
    True
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

MAX_RETRY_AFTER_S = 60.0  # a longer Retry-After is capped (the caller's timeout budget matters more)


class Retryable(Exception):
    """An attempt failed in a way worth retrying; `retry_after` is the wait the server asked for."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.retry_after = retry_after


class GaveUp(Exception):
    """Every attempt failed: `reason` is the last failure, `attempts` how many were made."""

    def __init__(self, reason: str, attempts: int):
        super().__init__(reason)
        self.reason = reason
        self.attempts = attempts


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait between attempts.

    The backoff is `backoff * 2 ** (attempt - 1)`, capped at `max_backoff`, times a jitter in
    [0.5, 1). A server's wait (`Retry-After`) replaces it, capped at `max_retry_after`; with
    `max_retry_after=None` it only lengthens the backoff, up to `max_backoff`.
    """

    max_retries: int = 2
    backoff: float = 0.5
    max_backoff: float = 8.0
    max_retry_after: float | None = MAX_RETRY_AFTER_S

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
        if retry_after is None:
            return delay
        if self.max_retry_after is None:
            return min(self.max_backoff, max(delay, retry_after))
        return min(self.max_retry_after, retry_after)


@dataclass
class LoopPool:
    """The connection pool and the concurrency cap of one event loop."""

    http: Any  # httpx.AsyncClient
    semaphore: asyncio.Semaphore


class LoopPools:
    """One `LoopPool` per event loop, made on first use in that loop and forgotten with it."""

    def __init__(self) -> None:
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopPool] = weakref.WeakKeyDictionary()

    def get(self, *, headers: Mapping[str, str], timeout: float, max_concurrency: int) -> LoopPool:
        """The running loop's pool (at most `max_concurrency` connections; `timeout` per request,
        connecting within 10 s)."""
        import httpx

        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            limits = httpx.Limits(max_connections=max_concurrency, max_keepalive_connections=max_concurrency)
            http = httpx.AsyncClient(
                headers=dict(headers), timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)), limits=limits
            )
            pool = LoopPool(http=http, semaphore=asyncio.Semaphore(max_concurrency))
            self._pools[loop] = pool
        return pool

    async def aclose(self) -> None:
        """Close the connection pool of the running event loop."""
        pool = self._pools.pop(asyncio.get_running_loop(), None)
        if pool is not None:
            await pool.http.aclose()

    def clear(self) -> None:
        """Forget every pool (pools of running loops are closed by `aclose` on that loop)."""
        self._pools.clear()


async def send(http: Any, method: str, url: str, payload: Any = None) -> Any:
    """One request (`payload` sent as JSON); a timeout or a connection error raises `Retryable`."""
    import httpx

    try:
        return await http.request(method, url, json=payload)
    except httpx.TimeoutException as exc:
        raise Retryable(f"timed out ({type(exc).__name__})") from None
    except httpx.TransportError as exc:
        raise Retryable(f"connection error ({type(exc).__name__}: {exc})") from None


async def with_retries(
    attempt: Callable[[Any], Awaitable[T]],
    *,
    pool: LoopPool,
    timeout: float,
    policy: RetryPolicy,
    label: str,
    redact: Callable[[str], str] = str,
    on_retry: Callable[[], None] | None = None,
    log: logging.Logger = logger,
) -> tuple[T, int]:
    """`(attempt(pool.http)'s result, attempts made)`: each attempt runs under the pool's
    semaphore and within `timeout` seconds; `Retryable` failures and timeouts are retried as
    `policy` says (each retry logged at INFO as `<label>: <reason>; retry i/n in s`, and counted by
    `on_retry`); after the last failure `GaveUp` is raised. Any other exception passes through."""
    tries = 0
    while True:
        tries += 1
        try:
            async with pool.semaphore:
                return await asyncio.wait_for(attempt(pool.http), timeout), tries
        except Retryable as exc:
            reason, retry_after = str(exc), exc.retry_after
        except asyncio.TimeoutError:
            reason, retry_after = f"no complete answer within timeout={timeout:g}s", None
        if tries > policy.max_retries:
            raise GaveUp(reason, tries)
        delay = policy.delay(tries, retry_after)
        if on_retry is not None:
            on_retry()
        log.info("%s: %s; retry %d/%d in %.2fs", label, redact(reason), tries, policy.max_retries, delay)
        await asyncio.sleep(delay)


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from `retry-after-ms`, else `Retry-After` (seconds or an HTTP date).

    Example:
        >>> retry_after_seconds({"retry-after-ms": "250"}), retry_after_seconds({"retry-after": "2"})
        (0.25, 2.0)
    """
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


__all__ = [
    "MAX_RETRY_AFTER_S",
    "GaveUp",
    "LoopPool",
    "LoopPools",
    "RetryPolicy",
    "Retryable",
    "retry_after_seconds",
    "send",
    "with_retries",
]
