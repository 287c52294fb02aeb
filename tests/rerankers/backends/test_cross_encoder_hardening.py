"""Issue 17, the cross-encoder on real MiniLM-L6 weights: NaN weights under `fallback`, a query
longer than the window, damaged or pickled weights on ONNX Runtime, ties on torch.

Damaged models are real copies of the weak cross-encoder with one file changed (NaN classifier
weights, a truncated safetensors file, a pickle that `weights_only` loading refuses).
"""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from rankbridge.rerankers import BackendError, Candidate, CandidateError, load_reranker  # noqa: E402
from rankbridge.rerankers.core.base import QueryError  # noqa: E402

pytestmark = pytest.mark.slow  # loads real weights

MODEL = "minilm-l6-ce-weak"
QUERY = "what is the capital of france"
DOCS = ["Bananas are yellow.", "Paris is the capital of France.", "Lyon is a city in France."]


def model_copy(source: Path, target: Path, weights: bytes | None = None, weights_name: str = "model.safetensors") -> Path:
    """`source` copied to `target` (tokenizer and config linked), with its weights replaced."""
    target.mkdir(parents=True)
    for file in source.iterdir():
        if file.name != "model.safetensors":
            os.symlink(file, target / file.name)
    if weights is None:
        shutil.copyfile(source / "model.safetensors", target / "model.safetensors")
    else:
        (target / weights_name).write_bytes(weights)
    return target


@pytest.fixture(scope="module")
def source(model_dir) -> Path:
    return model_dir / MODEL


@pytest.fixture(scope="module")
def nan_model(source, tmp_path_factory) -> Path:
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(source / "model.safetensors"))
    tensors["classifier.weight"] = np.full_like(tensors["classifier.weight"], np.nan)
    folder = model_copy(source, tmp_path_factory.mktemp("nan") / "model", weights=b"")
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


@pytest.fixture
def onnx_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RANKBRIDGE_CACHE_DIR", str(tmp_path / "cache"))


# ---------------------------------------------------------------------- 2. fallback gaps


def test_nan_weights_are_a_backend_error_that_fallback_handles(nan_model):
    candidates = [Candidate(text=t, score=s) for t, s in zip(DOCS, [0.1, 0.3, 0.2])]
    raising = load_reranker({"backend": "cross-encoder", "model": str(nan_model), "device": "cpu"})
    with pytest.raises(BackendError, match="nan"):
        raising.rank(QUERY, candidates)
    fallback = load_reranker({"backend": "cross-encoder", "model": str(nan_model), "device": "cpu", "on_error": "fallback"})
    results = fallback.rank(QUERY, candidates)  # raised BackendError even under fallback
    assert results.indices == [1, 2, 0] and results.fallback_reason


# ---------------------------------------------------------------------- 3. the caller's input


@pytest.mark.parametrize("on_error", ["raise", "fallback"])
def test_a_query_longer_than_the_window_is_a_query_error_under_every_policy(on_error):
    reranker = load_reranker({"backend": "cross-encoder", "model": MODEL, "device": "cpu", "max_length": 16, "on_error": on_error})
    with pytest.raises(QueryError, match="shorten the query") as info:
        reranker.rank("a query far longer than sixteen tokens " * 3, DOCS)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("on_error", ["raise", "fallback"])
def test_non_text_candidates_are_candidate_errors_on_a_real_model(weak_cross_encoder, on_error):
    weak_cross_encoder.config.on_error = on_error
    try:
        for bad in (123, b"bytes", "x\ud800y"):
            with pytest.raises(CandidateError, match="candidate 2") as info:
                weak_cross_encoder.rank(QUERY, [*DOCS[:2], Candidate(text=bad)])
            assert info.value.index == 2
    finally:
        weak_cross_encoder.config.on_error = "raise"


# ---------------------------------------------------------------------- 8. damaged or pickled weights


@pytest.mark.parametrize("runtime", ["onnx", "torch"])
def test_a_truncated_safetensors_file_is_a_backend_error_on_every_runtime(source, tmp_path, onnx_cache, runtime):
    weights = (source / "model.safetensors").read_bytes()
    folder = model_copy(source, tmp_path / "damaged", weights=weights[: len(weights) // 3])
    with pytest.raises(BackendError, match="could not load the weights"):
        load_reranker({"backend": "cross-encoder", "model": str(folder), "device": "cpu", "runtime": runtime})


class NotAllowed:
    """A class `torch.load(weights_only=True)` refuses to unpickle."""


@pytest.mark.parametrize("runtime", ["onnx", "torch"])
def test_pickled_weights_that_weights_only_refuses_are_a_backend_error(source, tmp_path, onnx_cache, runtime):
    folder = model_copy(source, tmp_path / "pickled", weights=pickle.dumps({"w": NotAllowed()}), weights_name="pytorch_model.bin")
    (folder / "model.safetensors").unlink(missing_ok=True)
    with pytest.raises(BackendError, match="could not load the weights"):
        load_reranker({"backend": "cross-encoder", "model": str(folder), "device": "cpu", "runtime": runtime})


# ---------------------------------------------------------------------- 9. ties on torch

LONG = "France, a country in western Europe, has Paris as its capital and seat of government. " * 3
DUPLICATE = "Paris is the capital and largest city of France."


def test_identical_texts_tie_and_keep_input_order_on_torch_whatever_the_batches():
    # batch_size=2 puts the two copies in batches padded to different widths: they scored ~1e-6 apart
    reranker = load_reranker({"backend": "cross-encoder", "model": MODEL, "device": "cpu", "batch_size": 2})
    docs = [LONG, DUPLICATE, DUPLICATE, "Paris.", DUPLICATE]
    results = reranker.rank(QUERY, docs)
    dup = [r for r in results if r.text == DUPLICATE]
    assert len({r.score for r in dup}) == 1
    assert [r.index for r in dup] == [1, 2, 4]  # ties keep input order
    assert [r.rank for r in dup] == list(range(dup[0].rank, dup[0].rank + 3))


def test_rank_many_orders_duplicates_like_rank_on_torch():
    reranker = load_reranker({"backend": "cross-encoder", "model": MODEL, "device": "cpu", "max_tokens_per_batch": 96})
    docs = [DUPLICATE, LONG, "Paris.", DUPLICATE, "Lyon is a city.", DUPLICATE]
    alone = reranker.rank(QUERY, docs)
    together = reranker.rank_many([QUERY, "a much longer other query about european capitals " * 3], [docs, [LONG, DUPLICATE] * 3])[0]
    assert alone.indices == together.indices
    np.testing.assert_allclose(alone.scores, together.scores, atol=1e-4)
