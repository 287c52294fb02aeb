"""rankbridge.rerankers — the one reranking interface and its backends.

Example:
    >>> from rankbridge.rerankers import load_reranker
    >>> load_reranker("lexical").rank("capital of france", ["Bananas are yellow.", "Paris is the capital of France."]).ids
    [1, 0]
"""

from .base import Reranker, Scores
from .config import RerankerConfig
from .errors import BackendError, CandidateError, ConfigError, MissingDependencyError, RankbridgeError
from .identity import IdentityConfig, IdentityReranker
from .lexical import LexicalConfig, LexicalReranker
from .loader import load_reranker
from .registry import available_backends, get_backend, register_backend
from .types import Candidate, RankedResult, RankedResults

register_backend("identity", IdentityReranker)
register_backend("lexical", LexicalReranker)

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
