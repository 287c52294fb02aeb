"""`lexical`: Okapi BM25 (bm25s formulas). A real baseline that needs no model.

Two sources of the collection statistics (document frequencies, average document length):

- candidate-only (the default): IDF over the candidate list being ranked. Those 50-200
  documents were retrieved because they match the query, so its terms look common among them
  and their IDF collapses: this is NOT BM25 over the corpus and it ranks far below it. It is
  good for what needs no corpus: a model-free check that a pipeline runs, candidates from
  anywhere (an API, another index) with no corpus at hand, or reordering by term overlap
  among documents that are already all on topic.
- corpus statistics: `corpus:` names a BEIR folder, a JSONL file of documents or a statistics
  file (`CorpusStatistics.save`), or statistics are handed over with `fit_corpus(documents)` /
  `LexicalReranker(statistics=...)` (e.g. by the code that indexes the first stage). A
  candidate's score is then exactly the score bm25s gives that document in an index of the
  whole corpus (same tokenizer, same variant), and depends on that candidate alone.

Example:
    >>> from rankbridge.rerankers import load_reranker
    >>> docs = ["Paris is the capital of France.", "Rome is the capital of Italy.", "Bananas are yellow.",
    ...         "The capital of Germany is Berlin."]
    >>> reranker = load_reranker("lexical").fit_corpus(docs)
    >>> reranker.corpus_statistics.documents
    4
    >>> reranker.rank("capital of France", docs[:2]).indices
    [0, 1]
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from rankbridge.rerankers.core.base import Reranker, Scores
from rankbridge.rerankers.core.config import RerankerConfig
from rankbridge.rerankers.core.errors import ConfigError
from rankbridge.rerankers.core.paths import data_dir
from rankbridge.rerankers.core.types import Candidate

logger = logging.getLogger(__name__)


class LexicalConfig(RerankerConfig):
    backend: Literal["lexical"] = "lexical"
    k1: float = Field(
        1.5, gt=0, le=100, description="BM25 term-frequency saturation (finite; above 100 every score underflows)."
    )
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
    corpus: str | None = Field(
        None,
        description="Where corpus statistics come from: a BEIR folder (its corpus.jsonl), a JSONL "
        "file of documents (`text`, optional `title`), or a statistics file written by "
        "`CorpusStatistics.save` (.json); a relative path not found from the working directory "
        "is looked up under $RANKBRIDGE_DATA_DIR. Then IDF and average length are the corpus's "
        "and a score equals BM25 over the whole corpus. Unset: IDF over the candidate list "
        "(see the README on what that is good for).",
    )


class LexicalReranker(Reranker):
    """Okapi BM25 over the candidate texts, with IDF from the candidate list or from a corpus.

    `statistics=` hands over `CorpusStatistics` built elsewhere (their tokenizer settings must
    match this reranker's); `corpus:` in the config reads them from a file.
    """

    name = "lexical"
    config_class = LexicalConfig

    def __init__(self, config=None, statistics: CorpusStatistics | None = None, **kwargs):
        super().__init__(config, **kwargs)
        self._stemmer = _load_stemmer() if self.config.stemmer else None
        self._statistics: CorpusStatistics | None = None
        if statistics is not None:
            self.use_corpus_statistics(statistics)
        elif self.config.corpus is not None:
            self._statistics = load_corpus_statistics(
                self.config.corpus, stopwords=self.config.stopwords, stemmer=self._stemmer is not None
            )

    @property
    def corpus_statistics(self) -> CorpusStatistics | None:
        """The corpus statistics scores use, or None (IDF over each candidate list)."""
        return self._statistics

    def use_corpus_statistics(self, statistics: CorpusStatistics) -> LexicalReranker:
        """Score with `statistics` from now on (checked against this reranker's tokenizer)."""
        if not isinstance(statistics, CorpusStatistics):
            raise TypeError(f"statistics must be CorpusStatistics, got {type(statistics).__name__}")
        mine = (self.config.stopwords, self._stemmer is not None)
        if (statistics.stopwords, statistics.stemmer) != mine:
            raise ConfigError(
                f"corpus statistics were tokenized with stopwords={statistics.stopwords!r}, "
                f"stemmer={statistics.stemmer}; this lexical reranker uses stopwords={mine[0]!r}, stemmer={mine[1]}"
            )
        self._statistics = statistics
        return self

    def fit_corpus(self, documents: Iterable[str | Mapping[str, Any]], show_progress: bool = False) -> LexicalReranker:
        """Compute corpus statistics over `documents` (texts, or mappings with `text` and an
        optional `title`, joined as the Qdrant first stage stores them) and score with them."""
        texts = (document_text(d) for d in documents)
        return self.use_corpus_statistics(
            CorpusStatistics.from_texts(texts, tokenize=self._tokenize, stopwords=self.config.stopwords,
                                        stemmer=self._stemmer is not None, show_progress=show_progress)
        )

    def scores_are_pointwise(self) -> bool:
        return self._statistics is not None  # with corpus IDF a score depends on its candidate alone

    def model_fingerprint(self) -> str:
        return "" if self._statistics is None else f"corpus:{self._statistics.digest()}"

    def _tokenize(self, texts: list[str]) -> list[list[str]]:
        import bm25s

        stopwords = None if self.config.stopwords == "none" else self.config.stopwords
        return bm25s.tokenize(
            texts, stopwords=stopwords, stemmer=self._stemmer, return_ids=False, show_progress=False
        )

    def _score_batch(self, queries: list[str], candidate_lists: list[list[Candidate]]) -> list[Scores]:
        score = self._score_query if self._statistics is None else self._score_with_corpus
        return [score(q, c) for q, c in zip(queries, candidate_lists)]

    def _relevance(self, scores: np.ndarray) -> Scores:
        scores = np.maximum(scores, 0.0)
        return Scores(scores=scores, relevance=scores / (scores + self.config.saturation))

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
        return self._relevance(scores)

    def _score_with_corpus(self, query: str, candidates: list[Candidate]) -> Scores:
        """bm25s's score of each candidate as a document of the corpus: for every query token the
        corpus knows (repeats count, as bm25s sums them), idf(df, N) x tfc(tf, |d|, avgdl); BM25L
        and BM25+ add their non-occurrence term for tokens the document lacks. Query tokens the
        corpus never saw are left out, as bm25s leaves them out."""
        from bm25s.scoring import _select_idf_scorer, _select_tfc_scorer

        stats = self._statistics
        assert stats is not None
        query_tokens = [t for t in self._tokenize([query])[0] if t in stats.document_frequency]
        if not query_tokens or not candidates:
            return self._relevance(np.zeros(len(candidates)))
        k1, b, method, delta = self.config.k1, self.config.b, self.config.method, _BM25S_DELTA
        idf_of, tfc = _select_idf_scorer(method), _select_tfc_scorer(method)
        idf = {t: idf_of(stats.document_frequency[t], N=stats.documents) for t in set(query_tokens)}
        avgdl = stats.average_length
        absent = {t: 0.0 for t in idf}
        if method in ("bm25l", "bm25+"):
            absent = {t: v * tfc(tf_array=0, l_d=avgdl, l_avg=avgdl, k1=k1, b=b, delta=delta) for t, v in idf.items()}
        scores = np.zeros(len(candidates))
        for i, tokens in enumerate(self._tokenize([c.text or "" for c in candidates])):
            counts, length = Counter(tokens), len(tokens)
            total = 0.0
            for t in query_tokens:
                tf = counts.get(t, 0)
                total += idf[t] * tfc(tf_array=tf, l_d=length, l_avg=avgdl, k1=k1, b=b, delta=delta) if tf else absent[t]
            scores[i] = total
        return self._relevance(scores)


_BM25S_DELTA = 0.5  # bm25s.BM25's default delta (BM25L, BM25+), which the candidate-only path uses


def document_text(doc: str | Mapping[str, Any]) -> str:
    """A document as the Qdrant first stage stores it: `title`, a newline, `text`."""
    if isinstance(doc, str):
        return doc
    if not isinstance(doc, Mapping):
        raise TypeError(f"a document must be a str or a mapping with 'text', got {type(doc).__name__}")
    title, text = doc.get("title") or "", doc.get("text") or ""
    return f"{title}\n{text}" if title and text else title or text


@dataclass(frozen=True)
class CorpusStatistics:
    """What BM25 needs from a corpus: its size, average tokenized length and the number of
    documents each token occurs in, with the tokenizer settings they were counted under."""

    documents: int
    average_length: float
    document_frequency: dict[str, int]
    stopwords: str = "en"
    stemmer: bool = True

    @classmethod
    def from_texts(
        cls,
        texts: Iterable[str],
        tokenize,
        stopwords: str,
        stemmer: bool,
        batch_size: int = 2048,
        show_progress: bool = False,
    ) -> CorpusStatistics:
        """Count over `texts` with `tokenize` (a list of texts -> a list of token lists)."""
        from tqdm.auto import tqdm

        df: Counter[str] = Counter()
        n, total = 0, 0
        batch: list[str] = []
        bar = tqdm(desc="corpus statistics", unit="doc", disable=not show_progress)

        def flush() -> None:
            nonlocal n, total
            for tokens in tokenize(batch):
                n += 1
                total += len(tokens)
                df.update(set(tokens))
            bar.update(len(batch))
            batch.clear()

        for text in texts:
            batch.append(text)
            if len(batch) >= batch_size:
                flush()
        if batch:
            flush()
        bar.close()
        if n == 0:
            raise ConfigError("corpus statistics need at least one document; the corpus is empty")
        return cls(documents=n, average_length=total / n, document_frequency=dict(df), stopwords=stopwords, stemmer=stemmer)

    def digest(self) -> str:
        """A short content hash (the score cache's key part)."""
        payload = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(payload).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "rankbridge-bm25-statistics-1",
            "documents": self.documents,
            "average_length": self.average_length,
            "stopwords": self.stopwords,
            "stemmer": self.stemmer,
            "document_frequency": self.document_frequency,
        }

    def save(self, path: str | os.PathLike) -> None:
        Path(path).write_text(json.dumps(self.to_dict()), encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike) -> CorpusStatistics:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            if data.get("format") != "rankbridge-bm25-statistics-1":
                raise ValueError("not a rankbridge BM25 statistics file (no 'format': 'rankbridge-bm25-statistics-1')")
            return cls(
                documents=int(data["documents"]),
                average_length=float(data["average_length"]),
                document_frequency={str(k): int(v) for k, v in data["document_frequency"].items()},
                stopwords=str(data["stopwords"]),
                stemmer=bool(data["stemmer"]),
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"lexical corpus statistics {path}: {exc}") from None


_LOADED: dict[tuple[Any, ...], CorpusStatistics] = {}
_LOADED_LOCK = threading.Lock()


def load_corpus_statistics(source: str | os.PathLike, stopwords: str = "en", stemmer: bool = True) -> CorpusStatistics:
    """Statistics from a `corpus:` source: a statistics file (.json), a BEIR folder or a JSONL
    file of documents (tokenized here, with the given settings; kept per process, so every
    reranker of one source shares one count)."""
    path = _resolve_corpus(source)
    if path.suffix == ".json":
        stats = CorpusStatistics.load(path)
        if (stats.stopwords, stats.stemmer) != (stopwords, stemmer):
            raise ConfigError(
                f"{path}: statistics counted with stopwords={stats.stopwords!r}, stemmer={stats.stemmer}, "
                f"but the reranker uses stopwords={stopwords!r}, stemmer={stemmer}"
            )
        return stats
    file = path / "corpus.jsonl" if path.is_dir() else path
    if not file.is_file():
        raise ConfigError(f"lexical corpus {path}: expected a BEIR folder with corpus.jsonl, a .jsonl file or a .json statistics file")
    stat = file.stat()
    key = (str(file.resolve()), stat.st_mtime_ns, stat.st_size, stopwords, stemmer)
    with _LOADED_LOCK:
        if key not in _LOADED:
            tokenizer = LexicalReranker(stopwords=stopwords, stemmer=stemmer)
            if stemmer and tokenizer._stemmer is None:
                raise ConfigError("lexical corpus statistics with stemmer: true need PyStemmer (pip install PyStemmer)")
            logger.info("counting BM25 corpus statistics over %s", file)
            _LOADED[key] = CorpusStatistics.from_texts(
                _jsonl_texts(file), tokenize=tokenizer._tokenize, stopwords=stopwords, stemmer=stemmer, show_progress=True
            )
        return _LOADED[key]


def _resolve_corpus(source: str | os.PathLike) -> Path:
    path = Path(source).expanduser()
    if path.exists():
        return path
    if not path.is_absolute() and (data_dir() / path).exists():
        return data_dir() / path
    raise ConfigError(f"lexical corpus {os.fspath(source)!r}: no such file or folder (also looked under {data_dir()})")


def _jsonl_texts(file: Path) -> Iterator[str]:
    with open(file, encoding="utf-8") as handle:
        for line_no, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{file}:{line_no}: invalid JSON ({exc.msg})") from None
            if isinstance(record, str):
                yield record
                continue
            if not isinstance(record, dict) or not isinstance(record.get("text", ""), str):
                raise ConfigError(f"{file}:{line_no}: expected a JSON object with a string 'text' (and optional 'title')")
            yield document_text(record)


def _load_stemmer():
    try:
        import Stemmer
    except ImportError:
        logger.debug("PyStemmer is not installed; lexical backend runs without stemming")
        return None
    return Stemmer.Stemmer("english")
