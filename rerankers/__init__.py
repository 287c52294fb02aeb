"""rankbridge.rerankers — the one reranking interface and its backends.

Example:
    >>> from rankbridge.rerankers import load_reranker
    >>> load_reranker("lexical").rank("capital of france", ["Bananas are yellow.", "Paris is the capital of France."]).ids
    [1, 0]
"""

from rankbridge.rerankers.core.base import Reranker, Scores
from rankbridge.rerankers.core.config import RerankerConfig
from rankbridge.rerankers.core.errors import (
    BackendError,
    CandidateError,
    ConfigError,
    MissingDependencyError,
    QueryError,
    RankbridgeError,
)
from rankbridge.rerankers.backends.identity import IdentityConfig, IdentityReranker
from rankbridge.rerankers.backends.lexical import LexicalConfig, LexicalReranker
from rankbridge.rerankers.core.loader import load_reranker
from rankbridge.rerankers.core.registry import available_backends, get_backend, register_backend
from rankbridge.rerankers.core.types import Candidate, RankedResult, RankedResults


__all__ = [
    "BackendError",
    "Candidate",
    "CandidateError",
    "ConfigError",
    "IdentityConfig",
    "IdentityReranker",
    "LexicalConfig",
    "LexicalReranker",
    "MissingDependencyError",
    "QueryError",
    "RankbridgeError",
    "RankedResult",
    "RankedResults",
    "Reranker",
    "RerankerConfig",
    "Scores",
    "available_backends",
    "get_backend",
    "load_reranker",
    "register_backend",
]
