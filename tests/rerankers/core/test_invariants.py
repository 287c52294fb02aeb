"""Property tests of the invariants every backend inherits from `Reranker` (identity, lexical)."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rankbridge.rerankers import Candidate, RankedResults, load_reranker

WORDS = ["paris", "capital", "france", "banana", "yellow", "the", "of", "protein", "cell", "été", "东京", "", "  "]

texts = st.one_of(
    st.text(max_size=40),
    st.lists(st.sampled_from(WORDS), max_size=8).map(" ".join),
)
candidate = st.builds(
    Candidate,
    text=texts,
    id=st.one_of(st.none(), st.integers(0, 5), st.text(max_size=3)),
    score=st.one_of(st.none(), st.floats(-100, 100, allow_nan=False)),
)
candidate_lists = st.lists(st.one_of(texts, candidate), max_size=40).flatmap(
    # duplicate some items on purpose: identical objects and identical texts must stay distinct
    lambda items: st.just(items + items[: len(items) // 3])
)
top_ns = st.one_of(st.none(), st.integers(1, 60))
thresholds = st.one_of(st.none(), st.floats(0, 1))

BACKENDS = ["identity", "lexical", {"backend": "identity", "relevance": "minmax"}]


def check_invariants(results: RankedResults, inputs, top_n, threshold, full: RankedResults) -> None:
    n = len(inputs)
    assert full.num_candidates == n
    # without top_n / threshold every candidate is there exactly once
    assert sorted(full.indices) == list(range(n))
    for r in full:
        given_item = inputs[r.index]
        if isinstance(given_item, Candidate):
            assert r.candidate is given_item  # mapped back by index, the very object
        else:
            assert r.candidate.text == given_item
        assert 0.0 <= r.relevance <= 1.0
        assert not math.isnan(r.score)
    # sorted by score descending, ties in input order
    for a, b in zip(full, full[1:]):
        assert (a.score > b.score) or (a.score == b.score and a.index < b.index)
    assert [r.rank for r in full] == list(range(n))
    # top_n and threshold are the only ways out, and they cut the full ranking's prefix
    kept = [r for r in full if threshold is None or r.relevance >= threshold]
    if top_n is not None:
        kept = kept[:top_n]
    assert results.indices == [r.index for r in kept]
    assert [r.rank for r in results] == list(range(len(results)))
    assert results.ids == [r.index if r.candidate.id is None else r.candidate.id for r in kept]


@pytest.mark.parametrize("spec", BACKENDS, ids=str)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inputs=candidate_lists, query=texts, top_n=top_ns, threshold=thresholds)
def test_invariants_hold_for_any_candidate_list(spec, inputs, query, top_n, threshold):
    reranker = load_reranker(spec)
    full = reranker.rank(query, inputs)
    results = reranker.rank(query, inputs, top_n=top_n, score_threshold=threshold)
    check_invariants(results, inputs, top_n, threshold, full)


@pytest.mark.parametrize("spec", ["identity", "lexical"])
def test_ten_thousand_candidates_all_accounted_for(spec):
    words = ["alpha", "beta", "gamma", "delta", "protein", "cell"]
    inputs = [f"{words[i % 6]} {words[(i * 7) % 6]} doc {i % 97}" for i in range(10_000)]
    full = load_reranker(spec).rank("protein cell", inputs)
    assert sorted(full.indices) == list(range(10_000))
    check_invariants(full.top(25), inputs, 25, None, full)


def test_duplicates_stay_distinct_and_keep_input_order():
    results = load_reranker("lexical").rank("paris", ["paris", "rome", "paris", "paris"])
    assert results.indices == [0, 2, 3, 1]
    assert results[0].score == results[1].score == results[2].score > results[3].score


def test_ids_fall_back_to_input_index():
    results = load_reranker("identity").rank("q", [Candidate(text="a", id="x"), "b", Candidate(text="c")])
    assert results.ids == ["x", 1, 2]


def test_identity_orders_by_first_stage_score_when_all_given():
    cands = [Candidate(text="a", score=0.1), Candidate(text="b", score=0.9), Candidate(text="c", score=0.5)]
    results = load_reranker({"backend": "identity", "relevance": "minmax"}).rank("q", cands)
    assert results.indices == [1, 2, 0]
    assert results.relevances == pytest.approx([1.0, 0.5, 0.0])
    rank_based = load_reranker("identity").rank("q", cands)
    assert rank_based.relevances == pytest.approx([1.0, 2 / 3, 1 / 3])


def test_lexical_is_a_real_bm25_baseline():
    docs = [
        "Bananas are yellow fruit rich in potassium.",
        "Paris is the capital and largest city of France.",
        "France borders Spain.",
        "The capital of Italy is Rome.",
    ]
    results = load_reranker("lexical").rank("what is the capital of France", docs)
    assert results.indices[0] == 1
    assert results.indices[-1] == 0
    assert results[-1].score == 0.0 and results[-1].relevance == 0.0
    assert 0 < results[0].relevance < 1


def test_lexical_query_with_no_known_terms_keeps_input_order():
    results = load_reranker("lexical").rank("zzz qqq", ["a b c", "d e f"])
    assert results.indices == [0, 1]
    assert results.scores == [0.0, 0.0]


def test_readme_done_when_example():
    ranked = load_reranker("lexical").rank("capital of france", ["Bananas are yellow.", "Paris is the capital of France."])
    assert ranked.ids == [1, 0]
