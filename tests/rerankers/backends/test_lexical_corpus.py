"""`lexical` with corpus statistics scores each candidate exactly as bm25s over the whole corpus does."""

from __future__ import annotations

import json
import random

import bm25s
import pytest
import Stemmer

from rankbridge.rerankers import Candidate, ConfigError, load_reranker
from rankbridge.rerankers.backends.lexical import CorpusStatistics, LexicalReranker
from support.beir_files import write_beir

DOCS = {
    "d1": ("Vitamin D", "Vitamin D supplements reduce the risk of hip fractures in older adults."),
    "d2": ("Calcium", "Calcium and vitamin D in the diet of children; calcium intake and bone density."),
    "d3": ("Hip fractures", "Fractures of the hip are common after falls; fractures heal slowly in the old."),
    "d4": ("Vector databases", "A vector database stores embeddings and answers nearest neighbour queries."),
    "d5": ("Hybrid search", "Hybrid search fuses dense and sparse retrieval: dense vectors and BM25 terms."),
    "d6": ("Bananas", "Bananas are yellow fruit rich in potassium."),
    "d7": ("", "Potassium, sodium and calcium are minerals the body needs every day."),
    "d8": ("Falls", "Falls in older adults: balance training prevents falls and fractures."),
    "d9": ("BM25", "BM25 ranks documents by term frequency and inverse document frequency."),
    "d10": ("Sparse retrieval", "Sparse retrieval with BM25 needs no training data."),
}
QUERIES = ["vitamin D hip fractures", "hybrid dense sparse retrieval BM25", "calcium calcium potassium", "zebra"]


def text(doc_id: str) -> str:
    title, body = DOCS[doc_id]
    return f"{title}\n{body}" if title else body


def bm25s_over_corpus(query: str, method: str, stopwords="en", stemmer=True) -> dict[str, float]:
    """The reference: bm25s indexing the whole corpus, its score for every document."""
    stem = Stemmer.Stemmer("english") if stemmer else None
    sw = None if stopwords == "none" else stopwords
    ids = list(DOCS)
    index = bm25s.BM25(method=method)
    index.index(bm25s.tokenize([text(d) for d in ids], stopwords=sw, stemmer=stem, return_ids=False, show_progress=False), show_progress=False)
    tokens = [t for t in bm25s.tokenize([query], stopwords=sw, stemmer=stem, return_ids=False, show_progress=False)[0] if t in index.vocab_dict]
    if not tokens:
        return dict.fromkeys(ids, 0.0)
    return dict(zip(ids, (float(s) for s in index.get_scores(tokens))))


@pytest.fixture
def corpus_jsonl(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text("\n".join(json.dumps({"_id": d, "title": t, "text": b}) for d, (t, b) in DOCS.items()) + "\n")
    return path


@pytest.mark.parametrize("method", ["lucene", "robertson", "atire", "bm25l", "bm25+"])
def test_scores_equal_bm25s_over_the_whole_corpus(corpus_jsonl, method):
    reranker = load_reranker({"backend": "lexical", "corpus": str(corpus_jsonl), "method": method})
    assert reranker.corpus_statistics.documents == len(DOCS)
    rng = random.Random(0)
    for query in QUERIES:
        expected = bm25s_over_corpus(query, method)
        subset = rng.sample(list(DOCS), 6)  # a candidate list: some documents of the corpus, any order
        results = reranker.rank(query, [Candidate(id=d, text=text(d)) for d in subset])
        got = {r.id: r.score for r in results}
        assert set(got) == set(subset)
        for doc_id in subset:
            assert got[doc_id] == pytest.approx(max(expected[doc_id], 0.0), rel=1e-5, abs=1e-6), (query, doc_id)


def test_a_beir_folder_a_jsonl_file_and_fit_corpus_give_the_same_statistics(tmp_path, corpus_jsonl):
    beir = write_beir(
        tmp_path / "beir",
        corpus="\n".join(json.dumps({"_id": d, "title": t, "text": b}) for d, (t, b) in DOCS.items()) + "\n",
        queries='{"_id": "q1", "text": "x"}\n',
        qrels="q1\td1\t1\n",
    )
    from_folder = LexicalReranker(corpus=str(beir)).corpus_statistics
    from_file = LexicalReranker(corpus=str(corpus_jsonl)).corpus_statistics
    fitted = LexicalReranker().fit_corpus({"title": t, "text": b} for t, b in DOCS.values()).corpus_statistics
    assert from_folder == from_file == fitted
    assert from_folder.document_frequency["fractur"] == 3  # d1, d3, d8 (stemmed)


def test_statistics_file_round_trip_and_tokenizer_mismatch(tmp_path, corpus_jsonl):
    stats = LexicalReranker(corpus=str(corpus_jsonl)).corpus_statistics
    path = tmp_path / "stats.json"
    stats.save(path)
    assert CorpusStatistics.load(path) == stats
    loaded = LexicalReranker(corpus=str(path))
    assert loaded.rank("hip fractures", [text("d3"), text("d8")]).indices == [0, 1]
    with pytest.raises(ConfigError, match="stemmer"):
        LexicalReranker(corpus=str(path), stemmer=False)
    with pytest.raises(ConfigError, match="stopwords"):
        LexicalReranker(stopwords="none").use_corpus_statistics(stats)


def test_with_corpus_statistics_a_score_depends_on_its_candidate_alone(corpus_jsonl):
    reranker = LexicalReranker(corpus=str(corpus_jsonl))
    assert reranker.scores_are_pointwise()
    alone = reranker.rank("hip fractures", [text("d3")])[0].score
    among = {r.id: r.score for r in reranker.rank("hip fractures", [Candidate(id=d, text=text(d)) for d in ("d1", "d3", "d8")])}
    assert among["d3"] == pytest.approx(alone)
    # Candidate-only IDF depends on the list: every candidate contains "fractures", so its IDF
    # among them is the smallest possible, and the same document scores differently.
    candidate_only = LexicalReranker()
    assert not candidate_only.scores_are_pointwise()
    only = {r.id: r.score for r in candidate_only.rank("hip fractures", [Candidate(id=d, text=text(d)) for d in ("d1", "d3", "d8")])}
    assert only["d3"] != pytest.approx(among["d3"])


def test_corpus_statistics_work_behind_the_score_cache(corpus_jsonl):
    reranker = load_reranker({"backend": "lexical", "corpus": str(corpus_jsonl), "cache": "memory"})
    first = reranker.rank("vitamin D", [text("d1"), text("d2"), text("d6")])
    again = reranker.rank("vitamin D", [text("d2"), text("d1")])  # a different list: per-candidate hits
    assert {r.text: r.score for r in again} == pytest.approx({r.text: r.score for r in first if r.text in (text("d1"), text("d2"))})
    assert reranker.cache_stats().hits == 2
    assert reranker.model_fingerprint().startswith("corpus:")


def test_bad_corpus_sources_are_named(tmp_path):
    with pytest.raises(ConfigError, match="no-such-corpus"):
        load_reranker({"backend": "lexical", "corpus": str(tmp_path / "no-such-corpus")})
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{broken\n')
    with pytest.raises(ConfigError, match="bad.jsonl:2"):
        load_reranker({"backend": "lexical", "corpus": str(bad)})
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match="empty"):
        load_reranker({"backend": "lexical", "corpus": str(empty)})
    notstats = tmp_path / "x.json"
    notstats.write_text("{}")
    with pytest.raises(ConfigError, match="statistics"):
        load_reranker({"backend": "lexical", "corpus": str(notstats)})
    with pytest.raises(TypeError, match="CorpusStatistics"):
        LexicalReranker().use_corpus_statistics({"documents": 1})


def test_scifact_corpus_resolves_under_the_data_dir(scifact_dir):
    reranker = load_reranker({"backend": "lexical", "corpus": "beir/scifact"})  # relative to $RANKBRIDGE_DATA_DIR
    assert reranker.corpus_statistics.documents == 5183
