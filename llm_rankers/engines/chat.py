"""The chat protocol every LLM engine speaks, and what a chat call returns.

A ranker (listwise, vllm-page) needs one `chat` call from an engine: `ChatClient` is that
protocol; `ChatResult` holds the generated text, the alternatives for the FIRST generated token
with their log-probabilities (when asked), and the token usage; `ClientStats` keeps running
totals. Content may be a string or a list of OpenAI content parts (`{"type": "text", ...}`,
`{"type": "image_url", ...}`) for vision models. The engines: `openai_http.OpenAIChatClient`
(an OpenAI-compatible server such as `vllm serve`) and `vllm_inprocess.InProcessVLLMClient`.
An engine subclasses `ChatClient` and implements `_complete(request)`; the protocol's `chat`
builds the `ChatRequest` and counts the result. `BackgroundLoop` (from `rerankers.runtime`) lets
synchronous methods run the async calls.

Example:
    >>> from rankbridge.llm_rankers.engines.chat import ChatResult, TokenLogprob
    >>> result = ChatResult("A", [TokenLogprob("A", -0.3), TokenLogprob("B", -1.5)], prompt_tokens=38)
    >>> result.first_token_logprobs[0].token, result.attempts
    ('A', 1)
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from rankbridge.rerankers.runtime.event_loop import BackgroundLoop

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
    """Running totals of one client (all event loops and threads together).

    Example:
        >>> stats = ClientStats()
        >>> stats.add(ChatResult("A", prompt_tokens=38, completion_tokens=1, attempts=2))
        >>> stats.calls, stats.prompt_tokens, stats.retries
        (1, 38, 1)
    """

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0
    failures: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    def add(self, result: ChatResult) -> None:
        """Count one answered call."""
        with self._lock:
            self.calls += 1
            self.prompt_tokens += result.prompt_tokens
            self.completion_tokens += result.completion_tokens
            self.retries += result.attempts - 1

    def add_failure(self) -> None:
        """Count one call that failed after every attempt."""
        with self._lock:
            self.failures += 1


@dataclass(frozen=True)
class ChatRequest:
    """The arguments of one `chat` call, as an engine's `_complete` receives them (normalized:
    `top_logprobs` is None unless log-probabilities were asked; `stop` is None or a list)."""

    messages: list[Message]
    max_tokens: int
    temperature: float = 0.0
    top_logprobs: int | None = None
    stop: list[str] | None = None
    extra_body: dict[str, Any] = field(default_factory=dict)


class ChatClient(Protocol):
    """What a ranker needs from an LLM engine: `chat`, `close`, `aclose`, `model` and `stats`.

    The engines here subclass it and implement `_complete`; any other object with these members
    (a test double) fits as well.
    """

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
    ) -> ChatResult:
        """One chat completion. `logprobs=True` asks for the `top_logprobs` most likely
        alternatives of each generated token; `ChatResult.first_token_logprobs` holds the first's.
        `extra_body` adds engine-specific fields (e.g. vLLM's `chat_template_kwargs`)."""
        request = ChatRequest(
            messages=list(messages),
            max_tokens=int(max_tokens),
            temperature=float(temperature),
            top_logprobs=int(top_logprobs or 1) if logprobs else None,
            stop=list(stop) if stop else None,
            extra_body=dict(extra_body or {}),
        )
        result = await self._complete(request)
        self.stats.add(result)
        return result

    async def _complete(self, request: ChatRequest) -> ChatResult:
        """The engine's one primitive: answer `request`."""
        raise NotImplementedError

    def close(self) -> None: ...

    async def aclose(self) -> None: ...


__all__ = ["BackgroundLoop", "ChatClient", "ChatRequest", "ChatResult", "ClientStats", "Message", "TokenLogprob"]
