"""Hard-negative mining: the first half of the recipe modern rerankers are made with.

1. Retrieve with a first stage; the top candidates that are not labelled relevant are hard
   negatives (`mine_hard_negatives`). Random corpus documents are the easy negatives.
2. Train a cross-encoder on (query, passage, label) pairs with sentence-transformers'
   `CrossEncoderTrainer`, easy negatives first, hard ones after (`train_cross_encoder`).

The first stage is anything with `search_many(queries, limit) -> list[list[Candidate]]` whose
candidates carry the document id as `Candidate.id` — the project's Qdrant `HybridRetriever`, or
`BM25Corpus` below when no vector store is wanted.

Example:
    >>> corpus = {"d1": {"title": "Paris", "text": "Paris is the capital of France."},
    ...           "d2": {"title": "Bananas", "text": "Bananas are yellow."},
    ...           "d3": {"title": "Rome", "text": "Rome is the capital of Italy."}}
    >>> mined = mine_hard_negatives(corpus, {"q1": "capital of France"}, {"q1": {"d1": 1}},
    ...                             depth=3, per_query=1, show_progress=False)
    >>> mined[0]["hard_negative_ids"]
    ['d3']
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from tqdm.auto import tqdm

from rankbridge.rerankers.core.errors import ConfigError, require
from rankbridge.rerankers.core.types import Candidate

logger = logging.getLogger(__name__)

Document = Mapping[str, str] | str


class FirstStage(Protocol):
    def search_many(self, queries: Sequence[str], limit: int = 100) -> list[list[Candidate]]: ...


def document_text(doc: Document) -> str:
    """The passage a reranker sees for a BEIR document: the title, a newline, the text — the
    same text the Qdrant first stage stores, so training matches what the reranker sees."""
    if isinstance(doc, str):
        return doc
    title = (doc.get("title") or "").strip()
    text = (doc.get("text") or "").strip()
    return f"{title}\n{text}" if title and text else title or text


class BM25Corpus:
    """A BM25 first stage over a whole corpus (bm25s), for mining without a vector store."""

    def __init__(self, corpus: Mapping[str, Document], text: Callable[[Document], str] = document_text):
        import bm25s

        self.ids = list(corpus)
        self._stemmer = _stemmer()
        tokens = bm25s.tokenize([text(corpus[i]) for i in self.ids], stopwords="en", stemmer=self._stemmer, show_progress=False)
        self._index = bm25s.BM25()
        self._index.index(tokens, show_progress=False)

    def search_many(self, queries: Sequence[str], limit: int = 100) -> list[list[Candidate]]:
        import bm25s

        tokens = bm25s.tokenize(list(queries), stopwords="en", stemmer=self._stemmer, show_progress=False)
        docs, scores = self._index.retrieve(tokens, k=min(limit, len(self.ids)), show_progress=False)
        return [
            [Candidate(id=self.ids[int(d)], score=float(s)) for d, s in zip(row_docs, row_scores)]
            for row_docs, row_scores in zip(docs, scores)
        ]


def _stemmer():
    try:
        import Stemmer
    except ImportError:
        return None
    return Stemmer.Stemmer("english")


def mine_hard_negatives(
    corpus: Mapping[str, Document],
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    first_stage: FirstStage | Literal["bm25"] = "bm25",
    depth: int = 50,
    per_query: int = 8,
    skip_top: int = 0,
    random_negatives: int = 0,
    pseudo_queries: int = 0,
    sampling: Literal["top", "random"] = "top",
    min_positive_grade: int = 1,
    positives_per_query: int | None = None,
    seed: int = 0,
    text: Callable[[Document], str] = document_text,
    batch_size: int = 64,
    show_progress: bool = True,
):
    """Mine negatives for every (query, relevant document) pair of `qrels`.

    Args:
        corpus: document id -> {"title", "text"} (BEIR) or plain text.
        queries: query id -> text.
        qrels: query id -> {document id: relevance}; relevance > 0 is a positive.
        first_stage: a retriever with `search_many`, or "bm25" for `BM25Corpus(corpus)`.
        depth: how many first-stage candidates to consider per query.
        per_query: hard negatives kept per query.
        skip_top: first-stage ranks skipped before taking negatives (unlabelled positives
            hide at the very top).
        random_negatives: easy negatives per query, drawn uniformly from the corpus.
        pseudo_queries: add this many pseudo-queries: a document's title as the query, its
            body as the positive (documents with a title and a body only).
        sampling: "top" keeps the best-ranked negatives, "random" samples them from the pool
            (ranks `skip_top`..`depth`): fewer unlabelled positives than the very top holds.
        min_positive_grade: judged grade from which a document is a positive. Documents judged
            above 0 but below it (e.g. "partially relevant" in graded qrels) are neither
            positives nor ever negatives.
        positives_per_query: keep at most this many positives per query (a seeded sample), so a
            query with 40 judged documents does not weigh 40 times one with a single one.
        seed: makes random negatives, pseudo-query choice and sampling reproducible.

    Returns:
        A `datasets.Dataset`, one row per (query, positive): query_id, query, positive_id,
        positive, hard_negative_ids, hard_negatives, random_negative_ids, random_negatives,
        source ("qrels" or "title"). No document judged relevant to a query (any grade above
        0) is ever its negative.
    """
    datasets = require("datasets", extra="train")
    if depth <= 0 or per_query < 0 or skip_top < 0 or random_negatives < 0:
        raise ConfigError("depth must be > 0 and per_query, skip_top, random_negatives >= 0")
    if skip_top >= depth:
        raise ConfigError(f"skip_top ({skip_top}) must be smaller than depth ({depth})")
    if min_positive_grade < 1:
        raise ConfigError(f"min_positive_grade must be >= 1 (grade 0 means judged not relevant), got {min_positive_grade}")
    if positives_per_query is not None and positives_per_query < 1:
        raise ConfigError(f"positives_per_query must be >= 1 or None, got {positives_per_query}")
    rng = random.Random(seed)
    if first_stage == "bm25":
        first_stage = BM25Corpus(corpus, text=text)

    pairs: list[tuple[str, str, str, set[str], str]] = []  # query_id, query, positive id, excluded ids, source
    for qid, judged in qrels.items():
        if qid not in queries:
            raise ConfigError(f"qrels name query '{qid}', which is not in the queries")
        relevant = {d for d, rel in judged.items() if rel > 0}  # never a negative, whatever its grade
        positives = sorted(d for d, rel in judged.items() if rel >= min_positive_grade)
        if positives_per_query is not None and len(positives) > positives_per_query:
            positives = sorted(rng.sample(positives, positives_per_query))
        for doc_id in positives:
            if doc_id not in corpus:
                raise ConfigError(f"qrels for query '{qid}' name document '{doc_id}', which is not in the corpus")
            pairs.append((qid, queries[qid], doc_id, relevant, "qrels"))
    if pseudo_queries:
        titled = sorted(d for d, doc in corpus.items() if isinstance(doc, Mapping) and doc.get("title") and doc.get("text"))
        for doc_id in rng.sample(titled, min(pseudo_queries, len(titled))):
            pairs.append((f"title:{doc_id}", corpus[doc_id]["title"], doc_id, {doc_id}, "title"))

    all_ids = list(corpus)
    rows: dict[str, list[Any]] = {k: [] for k in (
        "query_id", "query", "positive_id", "positive", "hard_negative_ids", "hard_negatives",
        "random_negative_ids", "random_negatives", "source")}
    bar = tqdm(total=len(pairs), desc="mining negatives", unit="query", disable=not show_progress)
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        retrieved = first_stage.search_many([p[1] for p in chunk], limit=depth)
        for (qid, query, pos_id, excluded, source), candidates in zip(chunk, retrieved):
            pool = [str(c.id) for c in candidates[skip_top:depth] if str(c.id) not in excluded]
            hard = pool[:per_query] if sampling == "top" else rng.sample(pool, min(per_query, len(pool)))
            easy: list[str] = []
            while len(easy) < random_negatives and len(all_ids) > len(excluded) + len(easy):
                pick = rng.choice(all_ids)
                if pick not in excluded and pick not in easy:
                    easy.append(pick)
            positive = corpus[pos_id]["text"] if source == "title" else text(corpus[pos_id])
            for key, value in (
                ("query_id", qid), ("query", query), ("positive_id", pos_id), ("positive", positive),
                ("hard_negative_ids", hard), ("hard_negatives", [text(corpus[d]) for d in hard]),
                ("random_negative_ids", easy), ("random_negatives", [text(corpus[d]) for d in easy]),
                ("source", source),
            ):
                rows[key].append(value)
        bar.update(len(chunk))
    bar.close()
    return datasets.Dataset.from_dict(rows)


def split_validation(
    qrels: Mapping[str, Mapping[str, int]], validation: float | int, seed: int = 0, min_positive_grade: int = 1
) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    """Carve a validation split out of training qrels: (train, validation), disjoint by query.

    `validation` is a number of queries (an int >= 1) or a fraction of them (a float in (0, 1)).
    Only queries with at least one positive (grade >= `min_positive_grade`) can be drawn; the
    draw is seeded. Never carve it from test: it chooses checkpoints and the fusion weight.

    Example:
        >>> train, val = split_validation({"a": {"d": 1}, "b": {"d": 1}, "c": {"d": 0}}, 1, seed=0)
        >>> sorted(train), sorted(val)
        (['a', 'c'], ['b'])
    """
    eligible = sorted(q for q, judged in qrels.items() if any(g >= min_positive_grade for g in judged.values()))
    if isinstance(validation, float) and 0.0 < validation < 1.0:
        count = max(1, round(validation * len(eligible)))
    elif isinstance(validation, int) and not isinstance(validation, bool) and validation >= 1:
        count = validation
    else:
        raise ConfigError(f"validation must be a query count >= 1 or a fraction in (0, 1), got {validation!r}")
    if count >= len(eligible):
        raise ConfigError(f"validation asks for {count} queries, but only {len(eligible)} training queries have a positive")
    held = set(random.Random(seed).sample(eligible, count))
    train = {q: dict(j) for q, j in qrels.items() if q not in held}
    return train, {q: dict(qrels[q]) for q in sorted(held)}
