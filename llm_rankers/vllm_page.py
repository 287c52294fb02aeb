"""`vllm-page`: the `vlm-page` yes/no scoring, served: a vision-language model behind an
OpenAI-compatible chat API (`vllm serve Qwen/Qwen2-VL-2B-Instruct ...`).

Each page goes as an `image_url` content part (a base64 data URL, resized client-side within
`min_pixels`/`max_pixels`) followed by the prompt; the request asks for one token with
`logprobs`/`top_logprobs`, and the score is log P(yes) - log P(no) from the first token's
alternatives. Relevance = sigmoid(score) = P(yes) / (P(yes) + P(no)), as in `vlm-page`.

When an answer word is not among the returned alternatives, its log-probability is taken to be
the lowest one returned (an upper bound, so the score errs toward the middle); when neither is,
the page scores 0 (relevance 0.5). Both cases are counted in `stats`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from rankbridge.rerankers.core.base import Scores
from rankbridge.rerankers.core.calibration import sigmoid
from rankbridge.rerankers.core.errors import BackendError
from rankbridge.rerankers.pages.images import candidate_image, fit_pixels, image_to_data_url
from rankbridge.rerankers.core.types import Candidate
from rankbridge.rerankers.pages.prompt import MONOQWEN_PROMPT, check_pixel_range, check_prompt_has_query

from rankbridge.llm_rankers.engines.chat import ChatClient, TokenLogprob
from rankbridge.llm_rankers.served import ServedModelConfig, ServedModelReranker

logger = logging.getLogger(__name__)


class VLLMPageConfig(ServedModelConfig):
    backend: Literal["vllm-page"] = "vllm-page"
    prompt: str = Field(
        MONOQWEN_PROMPT,
        description="Text sent after the page image; `{query}` is replaced by the query. Default: MonoQwen2-VL's prompt.",
    )
    yes_token: str = Field("True", description="The answer token whose probability is the relevance.")
    no_token: str = Field("False", description="The answer token it is compared against.")
    top_logprobs: int = Field(20, ge=2, le=20, description="Alternatives of the first token to ask for (OpenAI allows up to 20).")
    min_pixels: int | None = Field(28 * 28 * 4, ge=1, description="Pages smaller than this many pixels are scaled up before sending.")
    max_pixels: int | None = Field(
        28 * 28 * 768, ge=1, description="Pages larger than this many pixels are scaled down before sending (fewer image tokens, smaller requests)."
    )
    image_format: Literal["png", "jpeg"] = Field("png", description="Encoding of the page in the data URL.")
    jpeg_quality: int = Field(90, ge=1, le=100, description="JPEG quality when `image_format` is jpeg.")

    @field_validator("prompt")
    @classmethod
    def _prompt_has_query(cls, value: str) -> str:
        return check_prompt_has_query(value)

    @model_validator(mode="after")
    def _answers_differ(self) -> VLLMPageConfig:
        if self.yes_token.strip() == self.no_token.strip():
            raise ValueError("yes_token and no_token must differ")
        check_pixel_range(self.min_pixels, self.max_pixels)
        return self


@dataclass
class VLLMPageStats:
    """Counters since the reranker was made."""

    pages: int = 0
    yes_missing: int = 0  # the yes token was not among the alternatives (bounded by the lowest)
    no_missing: int = 0
    unscored: int = 0  # neither was: score 0


def yes_no_score(alternatives: list[TokenLogprob], yes: str, no: str) -> tuple[float, bool, bool]:
    """log P(yes) - log P(no) from the first token's alternatives; tokens compare after
    stripping whitespace ("True" and " True" are the same answer; their probabilities add up).

    Returns (score, yes_found, no_found). A missing answer gets the lowest returned logprob.

    Example:
        >>> from rankbridge.llm_rankers.engines.chat import TokenLogprob
        >>> round(yes_no_score([TokenLogprob("True", -0.1), TokenLogprob("False", -2.4)], "True", "False")[0], 2)
        2.3
    """
    yes_lp = _logsumexp([t.logprob for t in alternatives if t.token.strip() == yes.strip()])
    no_lp = _logsumexp([t.logprob for t in alternatives if t.token.strip() == no.strip()])
    if yes_lp is None and no_lp is None:
        return 0.0, False, False
    floor = min(t.logprob for t in alternatives)
    return (yes_lp if yes_lp is not None else floor) - (no_lp if no_lp is not None else floor), yes_lp is not None, no_lp is not None


def _logsumexp(values: list[float]) -> float | None:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return None
    top = max(finite)
    return top + math.log(sum(math.exp(v - top) for v in finite))


class VLLMPageReranker(ServedModelReranker):
    """Rerank page images with a VLM served by vLLM (OpenAI-compatible chat API, logprobs).

    Example:
        >>> from rankbridge.rerankers import Candidate, load_reranker
        >>> reranker = load_reranker({
        ...     "backend": "vllm-page",
        ...     "base_url": "http://127.0.0.1:8000/v1",
        ...     "model": "monoqwen2-vl",   # vllm serve Qwen/Qwen2-VL-2B-Instruct --enable-lora ...
        ... })
        >>> reranker.config.yes_token
        'True'
        >>> reranker.rank("revenue in 2023", [Candidate(image="p1.png"), Candidate(image="p2.png")])  # doctest: +SKIP
    """

    name = "vllm-page"
    config_class = VLLMPageConfig
    accepts_text = False
    accepts_images = True

    def __init__(self, config: Any = None, *, client: ChatClient | None = None, **kwargs: Any):
        super().__init__(config, client=client, **kwargs)
        self._stats_lock = threading.Lock()
        self.stats = VLLMPageStats()

    def messages(self, query: str, image_url: str) -> list[dict[str, Any]]:
        """The chat request for one page: the image part, then the prompt."""
        return [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": image_url}},
                    {"type": "text", "text": self.config.prompt.format(query=query)},
                ],
            }
        ]

    def _image_url(self, index: int, candidate: Candidate) -> str:
        cfg = self.config
        if isinstance(candidate.image, str) and candidate.image.startswith(("http://", "https://")):
            return candidate.image  # the server fetches it (and resizes it with its own processor)
        image = fit_pixels(candidate_image(index, candidate), cfg.min_pixels, cfg.max_pixels)
        return image_to_data_url(image, format=cfg.image_format, quality=cfg.jpeg_quality)

    # ------------------------------------------------------------------ scoring

    async def _ascore_query(self, query: str, candidates: list[Candidate]) -> Scores:
        urls = [self._image_url(i, c) for i, c in enumerate(candidates)]
        scores = await asyncio.gather(*(self._score_page(query, url) for url in urls))
        raw = np.asarray(scores, dtype=np.float64)
        return Scores(scores=raw, relevance=sigmoid(raw))

    async def _score_page(self, query: str, image_url: str) -> float:
        cfg = self.config
        result = await self.client.chat(
            self.messages(query, image_url),
            max_tokens=1,
            temperature=0.0,
            logprobs=True,
            top_logprobs=cfg.top_logprobs,
        )
        alternatives = result.first_token_logprobs
        if not alternatives:
            raise BackendError(
                f"{cfg.base_url} returned no logprobs for the first token (answer {result.text!r}); "
                "vllm-page needs a server that supports `logprobs` and `top_logprobs`"
            )
        score, yes_found, no_found = yes_no_score(alternatives, cfg.yes_token, cfg.no_token)
        with self._stats_lock:
            self.stats.pages += 1
            self.stats.yes_missing += not yes_found
            self.stats.no_missing += not no_found
            self.stats.unscored += not (yes_found or no_found)
        if not (yes_found or no_found):
            logger.warning(
                "vllm-page: neither %r nor %r among the first token's alternatives (got %r); the page scores 0",
                cfg.yes_token, cfg.no_token, [t.token for t in alternatives[:5]],
            )
        return score


__all__ = ["VLLMPageConfig", "VLLMPageReranker", "VLLMPageStats", "yes_no_score"]
