"""Listwise (RankGPT-style) ranking: the reranker, its window scheduler, the permutation parser that
never raises, prompts as data files (`templates/`) and token counting."""

from rankbridge.llm_rankers.listwise.parser import ParsedPermutation, order_from_logprobs, parse_permutation
from rankbridge.llm_rankers.listwise.prompts import PromptTemplate
from rankbridge.llm_rankers.listwise.reranker import ListwiseConfig, ListwiseReranker, ListwiseStats
from rankbridge.llm_rankers.listwise.scheduler import estimate_calls, plan_windows

__all__ = [
    "ListwiseConfig",
    "ListwiseReranker",
    "ListwiseStats",
    "ParsedPermutation",
    "PromptTemplate",
    "estimate_calls",
    "order_from_logprobs",
    "parse_permutation",
    "plan_windows",
]
