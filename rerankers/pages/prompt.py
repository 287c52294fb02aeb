"""The yes/no page prompt shared by `vlm-page` (in process) and `vllm-page` (over a server), and
the validators both configs use."""

from __future__ import annotations

MONOQWEN_PROMPT = (
    "Assert the relevance of the previous image document to the following query, "
    "answer True or False. The query is: {query}"
)


def check_prompt_has_query(prompt: str) -> str:
    """Validator shared by the page configs: the prompt must carry `{query}`."""
    if "{query}" not in prompt:
        raise ValueError("prompt must contain the placeholder {query}")
    return prompt


def check_pixel_range(min_pixels: int | None, max_pixels: int | None) -> None:
    """Validator shared by the page configs: `min_pixels` must not exceed `max_pixels`."""
    if min_pixels is not None and max_pixels is not None and min_pixels > max_pixels:
        raise ValueError(f"min_pixels ({min_pixels}) must not exceed max_pixels ({max_pixels})")


__all__ = ["MONOQWEN_PROMPT", "check_pixel_range", "check_prompt_has_query"]
