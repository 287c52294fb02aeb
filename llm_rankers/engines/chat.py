"""The chat protocol every LLM engine speaks, and what a chat call returns.

A ranker (listwise, vllm-page) needs one `chat` call from an engine: `ChatClient` is that
protocol; `ChatResult` holds the generated text, the alternatives for the FIRST generated token
with their log-probabilities (when asked), and the token usage; `ClientStats` keeps running
totals. Content may be a string or a list of OpenAI content parts (`{"type": "text", ...}`,
`{"type": "image_url", ...}`) for vision models. The engines: `openai_http.OpenAIChatClient`
(an OpenAI-compatible server such as `vllm serve`) and `vllm_inprocess.InProcessVLLMClient`.
`BackgroundLoop` lets synchronous methods run the async calls.

Example:
    >>> from rankbridge.llm_rankers.engines.chat import ChatResult, TokenLogprob
    >>> result = ChatResult("A", [TokenLogprob("A", -0.3), TokenLogprob("B", -1.5)], prompt_tokens=38)
    >>> result.first_token_logprobs[0].token, result.attempts
    ('A', 1)
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
Message = dict[str, Any]


@dataclass(frozen=True)
class TokenLogprob:
    """One candidate for a generated token and its natural-log probability."""

    token: str
    logprob: float


@dataclass
class ChatResult:
    """What one chat call returned.

    Attributes:
        text: the generated text ("" when the server sent no content).
        first_token_logprobs: alternatives for the first generated token, most likely first
            (empty unless `logprobs=True` was asked and the server returned them).
        prompt_tokens / completion_tokens: the server's token usage (0 when it reports none).
        finish_reason: `stop`, `length`, ... as the server says.
        attempts: HTTP attempts made (1 when no retry was needed).
    """

    text: str
    first_token_logprobs: list[TokenLogprob] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    attempts: int = 1


@dataclass
class ClientStats:
    """Running totals of one client (all event loops together)."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0
    failures: int = 0

    def add(self, result: ChatResult) -> None:
        self.calls += 1
        self.prompt_tokens += result.prompt_tokens
        self.completion_tokens += result.completion_tokens
        self.retries += result.attempts - 1


class ChatClient(Protocol):
    """What a ranker needs from an LLM engine."""

    model: str
    stats: ClientStats

    async def chat(
        self,
        messages: Sequence[Message],
        max_tokens: int,
        *,
        temperature: float = 0.0,
        logprobs: bool = False,
        top_logprobs: int | None = None,
        stop: Sequence[str] | None = None,
        extra_body: dict[str, Any] | None = None,
    ) -> ChatResult: ...

    def close(self) -> None: ...

    async def aclose(self) -> None: ...


class BackgroundLoop:
    """A private event loop on a daemon thread, so synchronous methods can run async code even
    when the caller is itself inside a running loop (a notebook, an async web handler).

    Example:
        >>> import asyncio
        >>> loop = BackgroundLoop()
        >>> loop.run(asyncio.sleep(0, result=42))
        42
        >>> loop.stop()
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        loop = self._ensure()
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="rankbridge-llm-loop", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def stop(self) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)
            loop.close()


__all__ = ["BackgroundLoop", "ChatClient", "ChatResult", "ClientStats", "Message", "TokenLogprob"]
