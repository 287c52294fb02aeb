"""`OpenAIChatClient`: the `chat` call on an OpenAI-compatible `/v1/chat/completions` server.

For `vllm serve` (or any compatible server): httpx, async, pooled connections, a per-attempt
timeout, retries with exponential backoff on 429 / 5xx / connection errors / timeouts /
unreadable JSON, a concurrency cap, optional API key.

Example:
    >>> import asyncio
    >>> from rankbridge.llm_rankers.engines.openai_http import OpenAIChatClient
    >>> client = OpenAIChatClient("http://127.0.0.1:8000/v1", model="smollm2-135m")
    >>> async def ask():  # doctest: +SKIP
    ...     result = await client.chat([{"role": "user", "content": "Say A or B."}], max_tokens=1,
    ...                                logprobs=True, top_logprobs=5)
    ...     return result.text, result.first_token_logprobs[:2], result.prompt_tokens
    >>> asyncio.run(ask())  # doctest: +SKIP
    ('A', [TokenLogprob(token='A', logprob=-0.3), TokenLogprob(token='B', logprob=-1.5)], 38)
"""

from __future__ import annotations

import logging
from typing import Any

from rankbridge.llm_rankers.engines.chat import ChatClient, ChatRequest, ChatResult, ClientStats, TokenLogprob
from rankbridge.rerankers.core.errors import BackendError, require
from rankbridge.rerankers.runtime.http_retry import GaveUp, LoopPools, Retryable, RetryPolicy, retry_after_seconds, send, with_retries
from rankbridge.rerankers.runtime.rerank_http import snippet

logger = logging.getLogger(__name__)


class OpenAIChatClient(ChatClient):
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
        self._pools = LoopPools()
        self.stats = ClientStats()

    @property
    def endpoint(self) -> str:
        return f"{self.base_url}/chat/completions"

    def __repr__(self) -> str:
        return f"OpenAIChatClient(base_url={self.base_url!r}, model={self.model!r})"

    # ------------------------------------------------------------------ public

    async def _complete(self, request: ChatRequest) -> ChatResult:
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": request.messages,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
        }
        if request.top_logprobs is not None:
            payload["logprobs"] = True
            payload["top_logprobs"] = request.top_logprobs
        if request.stop:
            payload["stop"] = request.stop
        payload.update(request.extra_body)
        body, attempts = await self._post_json(self.endpoint, payload)
        return _chat_result_from_openai(body, attempts, self.endpoint)

    async def models(self) -> list[str]:
        """The model names the server serves (`GET /models`)."""
        body, _ = await self._request_json("GET", f"{self.base_url}/models", None)
        try:
            return [item["id"] for item in body["data"]]
        except (KeyError, TypeError) as exc:
            raise BackendError(f"{self.base_url}/models returned an unexpected body: {str(body)[:200]}") from exc

    async def aclose(self) -> None:
        """Close the connection pool of the running event loop."""
        await self._pools.aclose()

    def close(self) -> None:
        """Forget every pool; pools of loops that are still running are closed by `aclose`."""
        self._pools.clear()

    # ------------------------------------------------------------------ HTTP with retries

    async def _post_json(self, url: str, payload: dict[str, Any]) -> tuple[Any, int]:
        return await self._request_json("POST", url, payload)

    async def _request_json(self, method: str, url: str, payload: dict[str, Any] | None) -> tuple[Any, int]:
        pool = self._pools.get(headers=self._headers, timeout=self.timeout, max_concurrency=self.max_concurrency)
        # A server's Retry-After only lengthens the backoff here, up to max_backoff.
        policy = RetryPolicy(self.max_retries, self.backoff, self.max_backoff, max_retry_after=None)
        try:
            return await with_retries(
                lambda http: self._attempt(http, method, url, payload),
                pool=pool,
                timeout=self.timeout,
                policy=policy,
                label=f"{method} {url}",
                log=logger,
            )
        except GaveUp as exc:
            self.stats.add_failure()
            raise BackendError(f"{method} {url} failed after {exc.attempts} attempt(s): {exc.reason}") from None

    @staticmethod
    async def _attempt(client: Any, method: str, url: str, payload: dict[str, Any] | None) -> Any:
        response = await send(client, method, url, payload)
        status = response.status_code
        if status == 429 or status >= 500:
            raise Retryable(f"HTTP {status}: {snippet(response.text)}", retry_after_seconds(response.headers))
        if status >= 400:
            raise BackendError(f"{method} {url} was rejected with HTTP {status}: {snippet(response.text)}")
        try:
            return response.json()
        except ValueError:
            raise Retryable(f"unreadable JSON in the answer (truncated?): {snippet(response.text)}") from None


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


__all__ = ["OpenAIChatClient"]
