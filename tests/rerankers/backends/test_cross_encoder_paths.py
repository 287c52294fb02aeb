"""The cross-encoder's speed paths rank like fp32 torch: OpenVINO fp32 / bf16, static int8 on ONNX
Runtime (QDQ) and on OpenVINO (NNCF); exports cached by content hash and reused; clear errors.

Fidelity is measured on the shared weak MiniLM over a few SciFact test queries, each with its
BM25 top-50 from the whole corpus, against fp32 torch: Kendall tau (mean over the queries, as the
benchmark reports it) and nDCG@10 from the qrels. The gate of issue 18 is tau >= 0.99 and |nDCG@10 difference| <= 0.005. Static int8 does
not reach it on this model (tau ~0.96 OpenVINO, ~0.91 ONNX Runtime on BM25 top-100; see the
README), so its tests hold it to what it reaches, not to the gate.
"""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.slow

MODEL = "minilm-l6-ce-weak"
QUERIES = 4
DEPTH = 50
CALIBRATION_PAIRS = 24


def _read_scifact(scifact_dir):
    corpus, queries, qrels = [], {}, {}
    with open(scifact_dir / "corpus.jsonl", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            corpus.append((row["_id"], f"{row.get('title', '')} {row.get('text', '')}".strip()))
    with open(scifact_dir / "queries.jsonl", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            queries[row["_id"]] = row["text"]
    with open(scifact_dir / "qrels" / "test.tsv", encoding="utf-8") as handle:
        next(handle)
        for line in handle:
            qid, did, grade = line.rstrip("\n").split("\t")
            qrels.setdefault(qid, {})[did] = int(grade)
    return corpus, queries, qrels


@pytest.fixture(scope="module")
def scifact_lists(scifact_dir):
    """(qids, queries, doc ids per query, texts per query, qrels): BM25 top-DEPTH of the first test queries."""
    bm25s = pytest.importorskip("bm25s")
    corpus, queries, qrels = _read_scifact(scifact_dir)
    qids = list(qrels)[:QUERIES]
    index = bm25s.BM25()
    index.index(bm25s.tokenize([t for _, t in corpus], stopwords="en", show_progress=False), show_progress=False)
    hits, _ = index.retrieve(
        bm25s.tokenize([queries[q] for q in qids], stopwords="en", show_progress=False), k=DEPTH, show_progress=False
    )
    doc_ids = [[corpus[int(j)][0] for j in row] for row in hits]
    texts = [[corpus[int(j)][1] for j in row] for row in hits]
    return qids, [queries[q] for q in qids], doc_ids, texts, {q: qrels[q] for q in qids}


@pytest.fixture(scope="module")
def calibration_file(tmp_path_factory, scifact_dir):
    """Calibration pairs from SciFact *train* queries (none of the evaluated ones), as JSONL."""
    from rankbridge.rerankers.runtime.calibration_data import read_calibration_pairs

    pairs = read_calibration_pairs(scifact_dir, max_pairs=CALIBRATION_PAIRS)  # train split first
    path = tmp_path_factory.mktemp("calibration") / "pairs.jsonl"
    path.write_text("".join(json.dumps({"query": q, "document": d}) + "\n" for q, d in pairs))
    return path


@pytest.fixture(scope="module")
def private_cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("RANKBRIDGE_CACHE_DIR", str(tmp_path_factory.mktemp("rankbridge-cache")))
    yield
    mp.undo()


def _scores(reranker, lists):
    _, queries, _, texts, _ = lists
    results = reranker.rank_many(queries, texts)
    return [np.array([r.score for r in sorted(res, key=lambda r: r.index)]) for res in results]


def _kendall(a, b) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(a, b)[0])


def _ndcg10(lists, scores) -> float:
    qids, _, doc_ids, _, qrels = lists
    values = []
    for qid, ids, sc in zip(qids, doc_ids, scores):
        order = np.argsort(-sc, kind="stable")[:10]
        dcg = sum((2 ** qrels[qid].get(ids[j], 0) - 1) / math.log2(rank + 2) for rank, j in enumerate(order))
        ideal = sorted(qrels[qid].values(), reverse=True)[:10]
        idcg = sum((2**g - 1) / math.log2(rank + 2) for rank, g in enumerate(ideal))
        values.append(dcg / idcg if idcg else 0.0)
    return float(np.mean(values))


@pytest.fixture(scope="module")
def reference(scifact_lists):
    from rankbridge.rerankers import load_reranker

    return _scores(load_reranker({"backend": "cross-encoder", "model": MODEL}), scifact_lists)


def _load(private_cache, **fields):
    from rankbridge.rerankers import load_reranker

    return load_reranker({"backend": "cross-encoder", "model": MODEL, **fields})


def _fidelity(reference, got, lists):
    taus = [_kendall(a, b) for a, b in zip(reference, got)]
    return float(np.mean(taus)), abs(_ndcg10(lists, got) - _ndcg10(lists, reference))


# ---------------------------------------------------------------------------- within the gate


@pytest.mark.parametrize(
    "fields",
    [{"runtime": "openvino"}, {"runtime": "openvino", "dtype": "bfloat16"}, {"runtime": "onnx"}],
    ids=["openvino-fp32", "openvino-bf16", "onnx-fp32"],
)
def test_path_ranks_within_the_gate(fields, reference, scifact_lists, private_cache):
    pytest.importorskip("openvino")
    got = _scores(_load(private_cache, **fields), scifact_lists)
    tau_mean, ndcg_diff = _fidelity(reference, got, scifact_lists)
    assert tau_mean >= 0.99, f"{fields}: Kendall tau {tau_mean:.4f} against fp32 torch"
    assert ndcg_diff <= 0.005, f"{fields}: nDCG@10 moved by {ndcg_diff:.4f}"
    if fields.get("dtype") != "bfloat16":  # fp32 paths: the same numbers, not only the same order
        assert max(np.abs(a - b).max() for a, b in zip(reference, got)) < 1e-3


# ---------------------------------------------------------------------------- static int8


@pytest.mark.parametrize("runtime", ["onnx", "openvino"])
def test_static_int8_is_calibrated_cached_and_ranks_close(runtime, reference, scifact_lists, calibration_file, private_cache):
    pytest.importorskip("openvino" if runtime == "openvino" else "onnxruntime")
    fields = {"runtime": runtime, "quantize": "int8-static", "calibration": str(calibration_file)}
    reranker = _load(private_cache, **fields)
    model_file = reranker._forward.model_file
    assert "int8-static-" in model_file.name
    got = _scores(reranker, scifact_lists)
    tau_mean, ndcg_diff = _fidelity(reference, got, scifact_lists)
    # Outside the 0.99 gate on this model (see the module docstring), but it must still rank
    # like the model: a broken calibration or a mis-quantized layer falls far below this.
    assert tau_mean >= 0.8, f"{runtime} int8-static: Kendall tau {tau_mean:.4f}"
    assert ndcg_diff <= 0.1

    # The same calibration data reuses the cached file: nothing is exported or quantized again.
    from rankbridge.rerankers.runtime import onnx as onnx_runtime
    from rankbridge.rerankers.runtime import openvino as openvino_runtime

    def fail(*args, **kwargs):  # a fault injector: a cached load must not reach these
        raise AssertionError("export or quantization ran again although the cache holds it")

    with pytest.MonkeyPatch.context() as mp:
        for module, name in [(onnx_runtime, "_export"), (onnx_runtime, "_quantize_static"), (openvino_runtime, "_quantize_int8")]:
            mp.setattr(module, name, fail)
        again = _load(private_cache, **fields)
    assert again._forward.model_file == model_file

    # Other calibration data gives another file (the key hashes the calibration inputs).
    other = calibration_file.parent / "fewer.jsonl"
    other.write_text("".join(calibration_file.read_text().splitlines(keepends=True)[:6]))
    changed = _load(private_cache, **{**fields, "calibration": str(other)})
    assert changed._forward.model_file != model_file
    assert changed._forward.model_file.parent == model_file.parent


def test_openvino_ir_is_cached_by_content_hash(private_cache, model_dir, monkeypatch):
    openvino = pytest.importorskip("openvino")
    from rankbridge.rerankers.runtime.onnx import onnx_cache_folder

    first = _load(private_cache, runtime="openvino")
    assert first._forward.model_file.parent == onnx_cache_folder(model_dir / MODEL) / "openvino"

    def fail(*args, **kwargs):  # a fault injector: a second load must not convert again
        raise AssertionError("converted again although the cache holds the IR")

    monkeypatch.setattr(openvino, "convert_model", fail)
    again = _load(private_cache, runtime="openvino", dtype="bfloat16")
    assert again._forward.model_file == first._forward.model_file


# ---------------------------------------------------------------------------- errors


def test_missing_openvino_is_a_one_line_error_naming_the_extra(monkeypatch):
    from rankbridge.rerankers import load_reranker
    from rankbridge.rerankers.core.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` now raises ImportError
    with pytest.raises(MissingDependencyError) as info:
        load_reranker({"backend": "cross-encoder", "model": MODEL, "runtime": "openvino"})
    message = str(info.value)
    assert "rankbridge[openvino]" in message and "openvino" in message.split()[0]
    assert "\n" not in message


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"runtime": "onnx", "quantize": "int8-static"}, "calibration"),
        ({"runtime": "torch", "quantize": "int8-static", "calibration": "x.jsonl"}, "int8-static"),
        ({"runtime": "openvino", "quantize": "int8"}, "int8"),
        ({"runtime": "onnx", "calibration": "x.jsonl"}, "calibration"),
        ({"runtime": "openvino", "dtype": "float16"}, "float16"),
        ({"runtime": "openvino", "device": "cuda"}, "cpu"),
    ],
)
def test_bad_combinations_name_the_field(fields, needle):
    from rankbridge.rerankers import load_reranker
    from rankbridge.rerankers.core.errors import ConfigError

    with pytest.raises(ConfigError, match=needle):
        load_reranker({"backend": "cross-encoder", "model": MODEL, **fields})


def test_calibration_data_errors_name_the_field(tmp_path):
    from rankbridge.rerankers.core.errors import ConfigError
    from rankbridge.rerankers.runtime.calibration_data import read_calibration_pairs

    with pytest.raises(ConfigError, match="'calibration'.*does not exist"):
        read_calibration_pairs(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "q", "document": "d"}\n{"question": "q"}\n')
    with pytest.raises(ConfigError, match="line 2"):
        read_calibration_pairs(bad)
    (tmp_path / "notbeir").mkdir()
    with pytest.raises(ConfigError, match="not a BEIR folder"):
        read_calibration_pairs(tmp_path / "notbeir")


def test_beir_calibration_pairs_are_deterministic_and_start_with_judged_documents(scifact_dir):
    from rankbridge.rerankers.runtime.calibration_data import read_calibration_pairs

    first = read_calibration_pairs(scifact_dir, max_pairs=40, documents_per_query=8)
    assert first == read_calibration_pairs(scifact_dir, max_pairs=40, documents_per_query=8)
    assert len(first) == 40 and len({q for q, _ in first}) == 5


def test_openvino_scores_alike_from_several_threads(private_cache):
    """One infer request per calling thread: concurrent calls (a server's workers) never share one."""
    pytest.importorskip("openvino")
    from concurrent.futures import ThreadPoolExecutor

    reranker = _load(private_cache, runtime="openvino")
    docs = ["Paris is the capital of France.", "Bananas are yellow.", "Statins lower LDL cholesterol. " * 20]
    expected = [r.score for r in reranker.rank("capital of france", docs)]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda _: [r.score for r in reranker.rank("capital of france", docs)], range(8)))
    for scores in got:
        np.testing.assert_allclose(scores, expected, atol=1e-6)
