"""The `cross-encoder` backend on the real MiniLM-L6 weights (torch and ONNX Runtime), long
documents, calibration of 1- and 2-label models, and its clear errors."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
from rankbridge.rerankers import Candidate, load_reranker
from rankbridge.rerankers.core.calibration import softmax_positive
from rankbridge.rerankers.backends.cross_encoder import CrossEncoderReranker
from rankbridge.rerankers.runtime.batching import plan_batches
from rankbridge.rerankers.core.errors import BackendError, ConfigError
from rankbridge.rerankers.runtime.long_documents import PairTemplate, document_windows

MODEL = "minilm-l6-ce-weak"

QUERY = "what is the capital of france"
PAIRS_DOCS = [
    "Paris is the capital and largest city of France.",
    "Bananas are yellow fruit that grow in tropical climates.",
    "France is a country in Western Europe; its capital city is Paris.",
    "The mitochondrion is the powerhouse of the cell.",
    "Berlin is the capital of Germany.",
    "",
]
# A query per document, so the handful of pairs also exercises several queries in one batch.
FIDELITY_PAIRS = [
    (QUERY, PAIRS_DOCS[0]),
    (QUERY, PAIRS_DOCS[1]),
    ("do statins lower ldl cholesterol", "Statin therapy reduced LDL cholesterol by 40% in the trial."),
    ("do statins lower ldl cholesterol", "The weather in Lisbon is mild in winter."),
    ("vitamin d and bone density", "Vitamin D supplementation improved bone mineral density in older adults. " * 40),
    ("a" * 3, ""),
]


@pytest.fixture(scope="module")
def model_path(model_dir):
    return str(model_dir / MODEL)


@pytest.fixture(scope="module")
def torch_reranker(weak_cross_encoder):
    return weak_cross_encoder  # loaded once per session (tests/conftest.py)


@pytest.fixture(scope="module")
def onnx_rerankers(model_path, tmp_path_factory):
    """One ONNX export (fp32 + int8) per test session, in a private cache folder."""
    mp = pytest.MonkeyPatch()
    mp.setenv("RANKBRIDGE_CACHE_DIR", str(tmp_path_factory.mktemp("rankbridge-cache")))
    fp32 = load_reranker({"backend": "cross-encoder", "model": MODEL, "runtime": "onnx"})
    int8 = load_reranker({"backend": "cross-encoder", "model": MODEL, "runtime": "onnx", "quantize": "int8"})
    yield fp32, int8
    mp.undo()


def _scores_by_index(results):
    return np.array([r.score for r in sorted(results, key=lambda r: r.index)])


# ---------------------------------------------------------------------------- fidelity


@pytest.mark.slow
def test_scores_match_sentence_transformers_predict(model_path, torch_reranker):
    torch = pytest.importorskip("torch")
    from sentence_transformers import CrossEncoder

    st_model = CrossEncoder(model_path, device="cpu")
    # sentence-transformers' default activation for a 1-label model is a sigmoid: compare it
    # with our relevance, and its raw logits (identity activation) with our score.
    st_relevance = st_model.predict(FIDELITY_PAIRS, show_progress_bar=False)
    st_logits = st_model.predict(FIDELITY_PAIRS, activation_fn=torch.nn.Identity(), show_progress_bar=False)
    queries = [q for q, _ in FIDELITY_PAIRS]
    results = torch_reranker.rank_many(queries, [[d] for _, d in FIDELITY_PAIRS])
    ours_logits = np.array([r[0].score for r in results])
    ours_relevance = np.array([r[0].relevance for r in results])
    np.testing.assert_allclose(ours_logits, st_logits, atol=1e-4)
    np.testing.assert_allclose(ours_relevance, st_relevance, atol=1e-4)


@pytest.mark.slow
def test_relevant_beats_irrelevant_and_relevance_is_a_probability(torch_reranker):
    results = torch_reranker.rank(QUERY, PAIRS_DOCS)
    assert sorted(results.indices) == list(range(len(PAIRS_DOCS)))
    assert results.indices[0] in (0, 2)
    by_index = {r.index: r for r in results}
    assert by_index[0].relevance > 0.5 > by_index[1].relevance
    assert by_index[0].score > by_index[3].score
    for r in results:
        assert 0.0 <= r.relevance <= 1.0
        assert r.relevance == pytest.approx(1.0 / (1.0 + np.exp(-r.score)), abs=1e-12)


@pytest.mark.slow
def test_rank_many_shares_batches_and_matches_rank(torch_reranker):
    other = ["Statin therapy reduced LDL cholesterol.", "Paris is in France.", "Lisbon weather."]
    together = torch_reranker.rank_many([QUERY, "statins ldl"], [PAIRS_DOCS, other])
    alone = [torch_reranker.rank(QUERY, PAIRS_DOCS), torch_reranker.rank("statins ldl", other)]
    for a, b in zip(together, alone):
        assert a.indices == b.indices
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)


@pytest.mark.slow
def test_batch_shape_does_not_change_scores(torch_reranker, model_path):
    """Token-budget batches (many small ones) and fixed batches score the same pairs alike."""
    tiny_budget = CrossEncoderReranker(model=model_path, max_tokens_per_batch=64)
    fixed = CrossEncoderReranker(model=model_path, batch_size=2)
    ref = _scores_by_index(torch_reranker.rank(QUERY, PAIRS_DOCS))
    np.testing.assert_allclose(_scores_by_index(tiny_budget.rank(QUERY, PAIRS_DOCS)), ref, atol=1e-5)
    np.testing.assert_allclose(_scores_by_index(fixed.rank(QUERY, PAIRS_DOCS)), ref, atol=1e-5)


@pytest.mark.slow
def test_results_keep_candidates_and_ids(torch_reranker):
    cands = [Candidate(text=t, id=f"d{i}", metadata={"i": i}) for i, t in enumerate(PAIRS_DOCS)]
    cands.append(cands[0])  # the same object twice stays two results
    results = torch_reranker.rank(QUERY, cands, top_n=3)
    assert len(results) == 3 and results.num_candidates == len(cands)
    full = torch_reranker.rank(QUERY, cands)
    assert sorted(full.indices) == list(range(len(cands)))
    for r in full:
        assert r.candidate is cands[r.index]


# ---------------------------------------------------------------------------- ONNX


@pytest.mark.slow
def test_onnx_fp32_and_int8_rank_like_torch(torch_reranker, onnx_rerankers):
    fp32, int8 = onnx_rerankers
    reference = torch_reranker.rank(QUERY, PAIRS_DOCS)
    got_fp32 = fp32.rank(QUERY, PAIRS_DOCS)
    got_int8 = int8.rank(QUERY, PAIRS_DOCS)
    assert got_fp32.indices == reference.indices
    np.testing.assert_allclose(_scores_by_index(got_fp32), _scores_by_index(reference), atol=1e-3)
    assert got_int8.indices == reference.indices
    assert int8._forward.onnx_path.name.endswith("int8.onnx")


@pytest.mark.slow
def test_onnx_export_is_cached_and_reused(onnx_rerankers, monkeypatch):
    fp32, _ = onnx_rerankers
    from rankbridge.rerankers.runtime import onnx as onnx_export

    def no_export(*args, **kwargs):  # a fault injector: a second load must not export again
        raise AssertionError("export ran again although the cache holds the model")

    monkeypatch.setattr(onnx_export, "_export", no_export)
    monkeypatch.setattr(onnx_export, "_quantize", no_export)
    again = load_reranker({"backend": "cross-encoder", "model": MODEL, "runtime": "onnx", "quantize": "int8"})
    assert again._forward.onnx_path.parent == fp32._forward.onnx_path.parent


# ---------------------------------------------------------------------------- long documents


def _long_document(tokenizer, after_tokens: int) -> str:
    filler = [
        "The committee reviewed the quarterly budget and approved new spending on road repairs.",
        "Migratory birds follow coastlines during autumn, resting in wetlands along the way.",
        "A well-maintained bicycle chain needs cleaning and light oil every few hundred kilometres.",
        "The orchestra rehearsed the symphony twice before the opening night in the new hall.",
    ]
    parts, i = [], 0
    while len(tokenizer(" ".join(parts), add_special_tokens=False)["input_ids"]) < after_tokens:
        parts.append(filler[i % len(filler)])
        i += 1
    parts.append("Paris is the capital and largest city of France.")
    return " ".join(parts)


@pytest.mark.slow
def test_max_chunk_finds_a_relevant_sentence_that_truncate_misses(model_path, torch_reranker, caplog):
    document = _long_document(torch_reranker.tokenizer, after_tokens=600)
    position = len(torch_reranker.tokenizer(document.rsplit("Paris", 1)[0], add_special_tokens=False)["input_ids"])
    assert position > 600
    chunked = CrossEncoderReranker(model=model_path, long_documents="max_chunk", chunk_overlap=32)
    with caplog.at_level(logging.INFO, logger="rankbridge.rerankers.backends.cross_encoder"):
        truncated_result = torch_reranker.rank(QUERY, [document, PAIRS_DOCS[1]])
        chunked_result = chunked.rank(QUERY, [document, PAIRS_DOCS[1]])
    truncated = {r.index: r for r in truncated_result}[0]
    found = {r.index: r for r in chunked_result}[0]
    assert truncated.relevance < 0.5 < found.relevance
    assert chunked_result.indices[0] == 0
    messages = [r.getMessage() for r in caplog.records if "longer than fit" in r.getMessage()]
    assert len(messages) == 2  # one line per call
    assert "1 truncated" in messages[0] and "1 split into" in messages[1]


def test_truncation_never_cuts_the_query(torch_tokenizer):
    template = PairTemplate.from_tokenizer(torch_tokenizer)
    query = torch_tokenizer("a long question " * 10, add_special_tokens=False)["input_ids"]
    document = list(range(1000, 1400))
    room = template.document_room(len(query), max_length=64)
    (window,) = document_windows(document, room, "truncate", overlap=0)
    ids, _ = template.build(query, window)
    assert len(ids) == 64 and ids[1 : 1 + len(query)] == query
    with pytest.raises(ValueError, match="leaves no room for a document"):
        template.document_room(len(query), max_length=len(query) + 2)


def test_pair_template_reproduces_the_tokenizer_pair_encoding(torch_tokenizer):
    template = PairTemplate.from_tokenizer(torch_tokenizer)
    q, d = "statins and ldl", "Statin therapy reduced LDL cholesterol by 40%."
    expected = torch_tokenizer(q, d, return_token_type_ids=True)
    ids, types = template.build(
        torch_tokenizer(q, add_special_tokens=False)["input_ids"],
        torch_tokenizer(d, add_special_tokens=False)["input_ids"],
    )
    assert ids == expected["input_ids"] and types == expected["token_type_ids"]


def test_windows_overlap_and_cover_the_whole_document():
    doc = list(range(1000))
    windows = document_windows(doc, room=300, mode="max_chunk", overlap=50)
    assert all(len(w) <= 300 for w in windows)
    assert windows[0][0] == 0 and windows[-1][-1] == 999
    for a, b in zip(windows, windows[1:]):
        assert a[-50:] == b[:50]
    assert set().union(*map(set, windows)) == set(doc)
    assert document_windows(doc, room=300, mode="truncate", overlap=50) == [doc[:300]]
    assert document_windows(doc[:10], room=300, mode="max_chunk", overlap=50) == [doc[:10]]


def test_token_budget_batches():
    lengths = np.array([500, 300, 300, 120, 100, 40, 40, 40, 10])
    batches = plan_batches(lengths, max_tokens=600)
    covered = [i for batch in batches for i in batch]
    assert covered == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) * lengths[batch[0]] <= 600 or len(batch) == 1
    assert plan_batches(np.array([900]), max_tokens=600) == [[0]]
    assert plan_batches(lengths, batch_size=4) == [[0, 1, 2, 3], [4, 5, 6, 7], [8]]


# ---------------------------------------------------------------------------- calibration


@pytest.mark.slow
def test_two_label_model_is_calibrated_by_softmax(model_path, tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, num_labels=2, max_position_embeddings=128,
    )
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(config).eval()
    folder = tmp_path / "tiny-2-label"
    model.save_pretrained(folder)
    transformers.AutoTokenizer.from_pretrained(model_path).save_pretrained(folder)

    reranker = load_reranker({"backend": "cross-encoder", "model": str(folder)})
    assert reranker.activation == "softmax"
    docs = PAIRS_DOCS[:4]
    results = sorted(reranker.rank(QUERY, docs), key=lambda r: r.index)
    enc = reranker.tokenizer([QUERY] * len(docs), docs, padding=True, return_tensors="pt")
    with torch.inference_mode():
        logits = model(**enc).logits.numpy()
    np.testing.assert_allclose([r.relevance for r in results], softmax_positive(logits), atol=1e-5)
    np.testing.assert_allclose([r.score for r in results], logits[:, 1] - logits[:, 0], atol=1e-5)
    with pytest.raises(ConfigError, match="softmax"):
        load_reranker({"backend": "cross-encoder", "model": model_path, "activation": "softmax"})


@pytest.mark.slow
def test_activation_none_gives_minmax_relevance(model_path):
    reranker = load_reranker({"backend": "cross-encoder", "model": model_path, "activation": "none"})
    results = reranker.rank(QUERY, PAIRS_DOCS)
    assert results[0].relevance == 1.0 and results[-1].relevance == 0.0


# ---------------------------------------------------------------------------- errors


def test_bad_model_path_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_reranker({"backend": "cross-encoder", "model": str(tmp_path / "no-such-model")})


def test_unknown_runtime_names_the_field():
    with pytest.raises(ConfigError, match="runtime"):
        load_reranker({"backend": "cross-encoder", "model": MODEL, "runtime": "tensorrt"})


def test_quantize_needs_onnx_and_model_is_required():
    with pytest.raises(ConfigError, match="quantize"):
        load_reranker({"backend": "cross-encoder", "model": MODEL, "quantize": "int8"})
    with pytest.raises(ConfigError, match="model"):
        load_reranker("cross-encoder")


@pytest.mark.slow
def test_corrupt_weights_are_a_clear_error(model_path, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(model_path, broken)
    (broken / "model.safetensors").write_bytes(b"\x00not a safetensors file" * 100)
    with pytest.raises(BackendError, match="could not load the weights"):
        load_reranker({"backend": "cross-encoder", "model": str(broken)})


@pytest.fixture(scope="module")
def torch_tokenizer(model_dir):
    transformers = pytest.importorskip("transformers")
    return transformers.AutoTokenizer.from_pretrained(str(model_dir / MODEL))
