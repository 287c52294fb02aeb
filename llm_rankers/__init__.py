"""rankbridge.llm_rankers — listwise LLM ranking: prompts as data, a window scheduler, a
permutation parser that never raises, and LLM clients (OpenAI-compatible HTTP, in-process vLLM).

Example:
    >>> from rankbridge.llm_rankers import parse_permutation
    >>> parse_permutation("[2] > [3] > [1]", 3).order
    [1, 2, 0]
"""

from rankbridge.llm_rankers.engines.chat import ChatResult, TokenLogprob
from rankbridge.llm_rankers.engines.openai_http import OpenAIChatClient
from rankbridge.llm_rankers.engines.vllm_inprocess import InProcessVLLMClient
from rankbridge.llm_rankers.listwise.reranker import ListwiseConfig, ListwiseReranker, ListwiseStats
from rankbridge.llm_rankers.listwise.parser import ParsedPermutation, order_from_logprobs, parse_permutation
from rankbridge.llm_rankers.listwise.prompts import PromptTemplate
from rankbridge.llm_rankers.listwise.scheduler import estimate_calls, plan_windows

__all__ = [
    "ChatResult",
    "InProcessVLLMClient",
    "ListwiseConfig",
    "ListwiseReranker",
    "ListwiseStats",
    "OpenAIChatClient",
    "ParsedPermutation",
    "PromptTemplate",
    "TokenLogprob",
    "estimate_calls",
    "order_from_logprobs",
    "parse_permutation",
    "plan_windows",
]
