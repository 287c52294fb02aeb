"""Counting and cutting text in tokens, for fitting listwise prompts into a model's context.

With a local tokenizer (a transformers tokenizer folder, e.g. the served model's safetensors
folder) counts are exact for that model. Without one, `TokenCounter` approximates one token per
4 characters, the usual rule of thumb for English BPE vocabularies; it then cuts at a word
boundary. The approximation can be off by tens of percent on code, numbers or non-English text,
so keep `context_length` a little below the real limit when no tokenizer is given.

Example:
    >>> counter = TokenCounter()          # approximate: 4 characters per token
    >>> counter.count("Paris is the capital of France.")
    8
    >>> counter.truncate("Paris is the capital of France.", 3)
    'Paris is'
"""

from __future__ import annotations

import logging
import math
from functools import lru_cache
from pathlib import Path
from typing import Any

from rankbridge.rerankers.core.paths import resolve_model

logger = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4


class TokenCounter:
    """Counts and truncates text in tokens of one tokenizer, or approximately without one.

    Args:
        tokenizer: a transformers tokenizer (fast, for offsets), or None for the approximation.
    """

    def __init__(self, tokenizer: Any = None):
        self.tokenizer = tokenizer

    @property
    def exact(self) -> bool:
        return self.tokenizer is not None

    @classmethod
    def for_model(cls, reference: str | None) -> TokenCounter:
        """The tokenizer of a local model folder (resolved like every model reference), or the
        approximation when there is none or it cannot be loaded (logged)."""
        tokenizer = _load_tokenizer(reference) if reference else None
        return cls(tokenizer)

    def count(self, text: str) -> int:
        if not text:
            return 0
        if self.tokenizer is None:
            return math.ceil(len(text) / CHARS_PER_TOKEN)
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def truncate(self, text: str, max_tokens: int) -> str:
        """`text` cut to at most `max_tokens` tokens (unchanged when it fits)."""
        if max_tokens <= 0:
            return ""
        if self.tokenizer is None:
            limit = max_tokens * CHARS_PER_TOKEN
            if len(text) <= limit:
                return text
            cut = text[:limit]
            space = cut.rfind(" ")
            return (cut[:space] if space > limit // 2 else cut).rstrip()
        encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = encoded["offset_mapping"]
        if len(offsets) <= max_tokens:
            return text
        return text[: offsets[max_tokens - 1][1]].rstrip()


@lru_cache(maxsize=8)
def _load_tokenizer(reference: str) -> Any:
    path = Path(resolve_model(reference))
    if not (path / "tokenizer.json").is_file() and not (path / "tokenizer_config.json").is_file():
        logger.info("no local tokenizer for %r; counting passage tokens as %d characters each", reference, CHARS_PER_TOKEN)
        return None
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(path))
    except Exception as exc:  # missing transformers or an unreadable folder: fall back, say so
        logger.warning(
            "could not load the tokenizer in %s (%s: %s); counting passage tokens as %d characters each",
            path, type(exc).__name__, exc, CHARS_PER_TOKEN,
        )
        return None
    if not getattr(tokenizer, "is_fast", False):
        logger.warning("tokenizer in %s is not a fast tokenizer; counting passage tokens approximately", path)
        return None
    return tokenizer


__all__ = ["CHARS_PER_TOKEN", "TokenCounter"]
