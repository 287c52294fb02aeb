"""`lexical`: Okapi BM25 over the candidates themselves (bm25s). A real baseline that needs no model.

IDF is computed over the candidate list being ranked, as a reranker sees it, not over a corpus.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
from pydantic import Field

from rankbridge.rerankers.core.base import Reranker, Scores
from rankbridge.rerankers.core.config import RerankerConfig
from rankbridge.rerankers.core.types import Candidate

logger = logging.getLogger(__name__)


class LexicalConfig(RerankerConfig):
    backend: Literal["lexical"] = "lexical"
    k1: float = Field(1.5, gt=0, description="BM25 term-frequency saturation.")
    b: float = Field(0.75, ge=0, le=1, description="BM25 length normalization.")
    method: Literal["lucene", "robertson", "atire", "bm25l", "bm25+"] = Field(
        "lucene", description="BM25 variant, as bm25s names them."
    )
    stopwords: Literal["en", "none"] = Field("en", description="Stopword list removed before scoring.")
    stemmer: bool = Field(True, description="Apply the English Snowball stemmer (PyStemmer) when it is installed.")
    saturation: float = Field(
        5.0,
        gt=0,
        description="Relevance = score / (score + saturation): a monotone squash of the BM25 score "
        "into [0, 1), not a probability.",
    )


class LexicalReranker(Reranker):
    """Okapi BM25 over the candidate texts."""

    name = "lexical"
    config_class = LexicalConfig

    def __init__(self, config=None, **kwargs):
        super().__init__(config, **kwargs)
        self._stemmer = _load_stemmer() if self.config.stemmer else None

    def _tokenize(self, texts: list[str]) -> list[list[str]]:
        import bm25s

        stopwords = None if self.config.stopwords == "none" else self.config.stopwords
        return bm25s.tokenize(
            texts, stopwords=stopwords, stemmer=self._stemmer, return_ids=False, show_progress=False
        )

    def _score_batch(self, queries: list[str], candidate_lists: list[list[Candidate]]) -> list[Scores]:
        return [self._score_query(q, c) for q, c in zip(queries, candidate_lists)]

    def _score_query(self, query: str, candidates: list[Candidate]) -> Scores:
        import bm25s

        doc_tokens = self._tokenize([c.text or "" for c in candidates])
        query_tokens = self._tokenize([query])[0]
        vocab = {t for doc in doc_tokens for t in doc}
        matched = [t for t in query_tokens if t in vocab]
        if not matched:
            scores = np.zeros(len(candidates))
        else:
            index = bm25s.BM25(k1=self.config.k1, b=self.config.b, method=self.config.method)
            index.index(doc_tokens, show_progress=False)
            scores = np.asarray(index.get_scores(matched), dtype=np.float64)
        scores = np.maximum(scores, 0.0)
        return Scores(scores=scores, relevance=scores / (scores + self.config.saturation))


def _load_stemmer():
    try:
        import Stemmer
    except ImportError:
        logger.debug("PyStemmer is not installed; lexical backend runs without stemming")
        return None
    return Stemmer.Stemmer("english")
