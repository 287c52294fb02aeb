"""`listwise`: RankGPT-style listwise ranking by an LLM served by vLLM.

The candidates are ordered by sliding a window (`window_size`, `step`) from the back of the list
to the front; for each window the LLM sees the query and the window's passages and answers with
an order, which is applied to the running order (`scheduler.py`). Two modes:

- `generate`: the model writes the order (`[3] > [1] > ...`); `parse_permutation` reads it,
  repairing what it must. An answer with no usable id leaves the window unchanged and is counted.
- `first_token`: passages are labelled with single letters and the window is ordered by the
  log-probabilities of the first generated token (FIRST): one forward pass, one output token.

Scores are rank-derived, not probabilities: the candidate at final position p of n gets
`score = n - p` and `relevance = 1 - p / n` (`rerankers.core.base.rank_derived_scores`).

Engines: `openai` (default) talks to an OpenAI-compatible server such as `vllm serve` over HTTP
(`engines.openai_http.OpenAIChatClient`); `vllm` runs `vllm.LLM` in this process.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from pydantic import Field, model_validator

from rankbridge.rerankers.core.base import Scores, rank_derived_scores
from rankbridge.rerankers.core.errors import ConfigError
from rankbridge.rerankers.core.paths import resolve_model
from rankbridge.rerankers.core.types import Candidate

from rankbridge.llm_rankers.engines.chat import ChatClient, ChatResult
from rankbridge.llm_rankers.engines.vllm_inprocess import InProcessVLLMClient
from rankbridge.llm_rankers.listwise.parser import ParsedPermutation, order_from_logprobs, parse_permutation
from rankbridge.llm_rankers.listwise.prompts import PromptTemplate
from rankbridge.llm_rankers.listwise.scheduler import estimate_calls, plan_windows, slide
from rankbridge.llm_rankers.served import ServedModelConfig, ServedModelReranker
from rankbridge.llm_rankers.listwise.tokens import TokenCounter

logger = logging.getLogger(__name__)

_DEFAULT_PROMPT = {"generate": "rankgpt", "first_token": "first"}
# Server-side fields that make the model continue a started assistant message (vLLM's chat API).
_CONTINUE = {"add_generation_prompt": False, "continue_final_message": True}


class ListwiseConfig(ServedModelConfig):
    """Configuration of the `listwise` backend."""

    backend: Literal["listwise"] = "listwise"
    model: str = Field(
        description="The model: the served model name for engine `openai` (as `/v1/models` lists it), a "
        "local folder or hub id for engine `vllm`."
    )
    engine: Literal["openai", "vllm"] = Field(
        "openai", description="`openai`: HTTP to an OpenAI-compatible server; `vllm`: in-process `vllm.LLM`."
    )
    mode: Literal["generate", "first_token"] = Field(
        "generate",
        description="`generate`: the model writes the order, which is parsed; `first_token`: the window is "
        "ordered by the log-probabilities of the first generated token (single-letter labels, one output token).",
    )
    prompt: str | None = Field(
        None,
        description="Built-in prompt name (`rankgpt`, `first`) or path to a prompt YAML file; default `rankgpt` "
        "for generate, `first` for first_token.",
    )
    window_size: int = Field(20, ge=2, description="Passages per LLM call.")
    step: int = Field(10, ge=1, description="How far the window moves toward the front each call (<= window_size).")
    num_passes: int = Field(1, ge=1, description="How many back-to-front sweeps.")
    concurrent_windows: bool = Field(
        True,
        description="Start each window as soon as the earlier windows overlapping it are done (the result "
        "is exactly the sequential one): windows run at once when step == window_size, and passes overlap.",
    )
    max_passage_tokens: int = Field(128, ge=1, description="Each passage is cut to this many tokens.")
    context_length: int = Field(
        4096, ge=64, description="The model's context in tokens; passages are cut further so every prompt fits."
    )
    max_output_tokens: int | None = Field(
        None, ge=1, description="Answer token limit; default 8 per passage + 16 (generate), 1 (first_token)."
    )
    top_logprobs: int = Field(
        20, ge=1, description="first_token: alternatives asked for (vLLM's default --max-logprobs is 20)."
    )
    tokenizer: str | None = Field(
        None,
        description="Local tokenizer folder for counting passage tokens; default: `model` when it is a local "
        "folder; otherwise 4 characters are counted as one token.",
    )
    temperature: float = Field(0.0, ge=0.0, description="Sampling temperature (0: greedy, reproducible).")
    engine_kwargs: dict[str, Any] | None = Field(
        None, description="Extra arguments for `vllm.LLM` (engine `vllm`), e.g. `{dtype: float32}`."
    )

    @model_validator(mode="after")
    def _check_window(self) -> ListwiseConfig:
        if self.step > self.window_size:
            raise ValueError(
                f"step={self.step} must be <= window_size={self.window_size}, or candidates between windows are never compared"
            )
        return self


@dataclass
class ListwiseStats:
    """Cost and repair accounting.

    Attributes:
        queries: queries ranked.
        calls: LLM calls (one per window).
        prompt_tokens / completion_tokens: as the server reported them.
        retries: HTTP attempts beyond the first.
        unusable_windows: windows whose answer named no valid passage: left unchanged.
        repaired_windows: windows whose answer needed any repair (see `repairs`).
        repairs: counts of duplicates, out_of_range, missing ids and think blocks removed.
    """

    queries: int = 0
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0
    unusable_windows: int = 0
    repaired_windows: int = 0
    repairs: dict[str, int] = field(
        default_factory=lambda: {"duplicates": 0, "out_of_range": 0, "missing": 0, "think_removed": 0}
    )

    def add_window(self, result: ChatResult, parsed: ParsedPermutation) -> None:
        self.calls += 1
        self.prompt_tokens += result.prompt_tokens
        self.completion_tokens += result.completion_tokens
        self.retries += result.attempts - 1
        if not parsed.usable:
            self.unusable_windows += 1
        elif parsed.repaired:
            self.repaired_windows += 1
        for key, value in parsed.repairs().items():
            if key in self.repairs:
                self.repairs[key] += value

    def merge(self, other: ListwiseStats) -> None:
        for key in ("queries", "calls", "prompt_tokens", "completion_tokens", "retries", "unusable_windows", "repaired_windows"):
            setattr(self, key, getattr(self, key) + getattr(other, key))
        for key, value in other.repairs.items():
            self.repairs[key] = self.repairs.get(key, 0) + value

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ListwiseReranker(ServedModelReranker):
    """RankGPT-style listwise reranker on an OpenAI-compatible server (vLLM) or in-process vLLM.

    Scores are rank-derived (`score = n - position`, `relevance = 1 - position / n`), not
    probabilities. A window whose answer cannot be read is left unchanged and counted in
    `stats.unusable_windows`; a server that stays down after `max_retries` raises a
    `BackendError`, or keeps the first-stage order with `on_error: fallback`.

    `engine: vllm` starts `vllm.LLM` in this process on first use; vLLM spawns its engine
    process, so a script using it needs the usual `if __name__ == "__main__":` guard.

    Example:
        >>> from rankbridge.rerankers import load_reranker
        >>> reranker = load_reranker({"backend": "listwise", "base_url": "http://127.0.0.1:8000/v1",
        ...                           "model": "smollm2-135m", "window_size": 20, "step": 10})
        >>> reranker.estimate_calls(100)
        9
        >>> results = reranker.rank("what is the capital of france?",
        ...                         ["Bananas are yellow.", "Paris is the capital of France."])  # doctest: +SKIP
        >>> reranker.last_stats.calls  # doctest: +SKIP
        1
    """

    name = "listwise"
    config_class = ListwiseConfig

    def __init__(self, config: ListwiseConfig | dict[str, Any] | None = None, *, client: ChatClient | None = None, **kwargs: Any):
        super().__init__(config, client=client, **kwargs)
        cfg = self.config
        self.prompt = PromptTemplate.load(cfg.prompt or _DEFAULT_PROMPT[cfg.mode])
        limit = self.prompt.max_window()
        if limit is not None and cfg.window_size > limit:
            raise ConfigError(
                f"field 'window_size' of backend 'listwise': prompt '{self.prompt.name}' labels at most {limit} "
                f"passages, got window_size={cfg.window_size}"
            )
        if cfg.mode == "first_token" and self.prompt.labels == "numeric" and cfg.window_size > 9:
            raise ConfigError(
                "mode 'first_token' needs single-token labels: use an alpha-labelled prompt (the default 'first') "
                f"or window_size <= 9 with numeric labels, got window_size={cfg.window_size}"
            )
        self._counter: TokenCounter | None = None
        self._stats_lock = threading.Lock()
        self.stats = ListwiseStats()
        self.last_stats = ListwiseStats()

    # ------------------------------------------------------------------ public extras

    def estimate_calls(self, n: int) -> int:
        """LLM calls needed to rank `n` candidates with this configuration (100 at 20/10: 9)."""
        cfg = self.config
        return estimate_calls(n, cfg.window_size, cfg.step, cfg.num_passes)

    # ------------------------------------------------------------------ scoring

    async def _ascore_query(self, query: str, candidates: list[Candidate]) -> Scores:
        order, stats = await self.rank_order(query, [c.text or "" for c in candidates])
        return rank_derived_scores(order)

    async def rank_order(self, query: str, texts: list[str]) -> tuple[list[int], ListwiseStats]:
        """The listwise order of `texts` (indices, best first) and this query's accounting.

        Raises `BackendError` when the LLM cannot be reached after the retries; an unreadable
        answer is not an error (its window is left unchanged and counted)."""
        cfg = self.config
        stats = ListwiseStats(queries=1)
        if self._counter is None:  # loading a tokenizer imports transformers: keep it off the event loop
            await asyncio.to_thread(self._token_counter)
        windows = plan_windows(len(texts), cfg.window_size, cfg.step, cfg.num_passes)

        async def rank_window(items: list[int]) -> list[int]:
            result, parsed = await self._rank_window(query, [texts[i] for i in items])
            stats.add_window(result, parsed)
            return parsed.order

        order = await slide(list(range(len(texts))), windows, rank_window, concurrent=cfg.concurrent_windows)
        if stats.unusable_windows:
            logger.warning(
                "listwise: %d of %d windows got no usable answer from %s and were left unchanged",
                stats.unusable_windows, stats.calls, cfg.model,
            )
        with self._stats_lock:
            self.stats.merge(stats)
            self.last_stats = stats
        return order, stats

    async def _rank_window(self, query: str, passages: list[str]) -> tuple[ChatResult, ParsedPermutation]:
        cfg = self.config
        client = self.client
        counter = self._token_counter()
        answer_tokens = cfg.max_output_tokens or (1 if cfg.mode == "first_token" else 8 * len(passages) + 16)
        messages, _ = self.prompt.fit_window(
            query,
            passages,
            counter,
            max_passage_tokens=cfg.max_passage_tokens,
            context_length=cfg.context_length,
            answer_tokens=answer_tokens,
        )
        extra = dict(_CONTINUE) if self.prompt.assistant_prefix else None
        if cfg.mode == "first_token":
            result = await client.chat(
                messages,
                max_tokens=answer_tokens,
                temperature=cfg.temperature,
                logprobs=True,
                top_logprobs=min(cfg.top_logprobs, max(len(passages), 1) + 5),
                extra_body=extra,
            )
            parsed = order_from_logprobs(result.first_token_logprobs, len(passages), self.prompt.labels)
            if not parsed.usable:  # no logprobs came back: read the text as a last resort
                parsed = parse_permutation(self.prompt.assistant_prefix + result.text, len(passages), self.prompt.labels)
        else:
            result = await client.chat(messages, max_tokens=answer_tokens, temperature=cfg.temperature, extra_body=extra)
            parsed = parse_permutation(self.prompt.assistant_prefix + result.text, len(passages), self.prompt.labels)
        if not parsed.usable:
            logger.debug("listwise: unusable answer for a window of %d: %r", len(passages), result.text[:200])
        return result, parsed

    # ------------------------------------------------------------------ construction

    def _build_client(self) -> ChatClient:
        cfg = self.config
        if cfg.engine == "vllm":
            kwargs = {"max_model_len": cfg.context_length, **(cfg.engine_kwargs or {})}
            return InProcessVLLMClient(resolve_model(cfg.model), **kwargs)
        return super()._build_client()

    def _token_counter(self) -> TokenCounter:
        if self._counter is None:
            self._counter = TokenCounter.for_model(self.config.tokenizer or self.config.model)
        return self._counter


__all__ = ["ListwiseConfig", "ListwiseReranker", "ListwiseStats"]
