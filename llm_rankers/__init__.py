"""rankbridge.llm_rankers — listwise LLM ranking: prompts as data, a window scheduler, a
permutation parser that never raises, and LLM clients (OpenAI-compatible HTTP, in-process vLLM).

Example:
    >>> from rankbridge.llm_rankers import parse_permutation
    >>> parse_permutation("[2] > [3] > [1]", 3).order
    [1, 2, 0]
"""

from .parser import ParsedPermutation, parse_permutation

__all__ = ["ParsedPermutation", "parse_permutation"]
