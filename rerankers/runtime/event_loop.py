"""`BackgroundLoop`: a private event loop on a daemon thread, so synchronous methods can run async
code (the remote rerank APIs, the LLM chat engines) even when the caller is itself inside a
running loop (a notebook, an async web handler)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class BackgroundLoop:
    """A private event loop on a daemon thread, started on first use and restarted after `stop`.

    Example:
        >>> loop = BackgroundLoop()
        >>> loop.run(asyncio.sleep(0, result=42)), loop.running
        (42, True)
        >>> loop.stop()
        >>> loop.running
        False
    """

    def __init__(self, name: str = "rankbridge-loop") -> None:
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        return self._loop is not None and not self._loop.is_closed()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the background loop and wait for its result (from any thread)."""
        loop = self._ensure()
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name=self.name, daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def stop(self) -> None:
        """Stop the loop and join its thread; a later `run` starts a fresh one."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)
            loop.close()


__all__ = ["BackgroundLoop"]
