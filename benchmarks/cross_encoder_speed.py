"""Cross-encoder speed on CPU: every peer and every rankbridge path, in one process, on the same pairs.

SciFact (BEIR) test queries, each with its BM25 top-k candidates from the whole corpus (bm25s,
title + text), scored by the MiniLM-L6 cross-encoder (`minilm-l6-ce-weak`, same shape and cost as
cross-encoder/ms-marco-MiniLM-L-6-v2; weak, so nDCG here only shows that the faster paths rank
the same, never a quality claim).

Peers (1.0x = sentence-transformers torch): sentence-transformers `backend="onnx"` (plain, its
O3-optimized export, its dynamic int8 export) and `backend="openvino"` (plain, its static int8
export), fastembed `TextCrossEncoder`, AnswerDotAI `rerankers` (`Reranker(..., model_type=
"cross-encoder")`) and FlashRank, each on the same local model (FlashRank and fastembed read our
plain ONNX export; nothing is downloaded). sentence-transformers' ONNX and OpenVINO backends need
optimum-onnx / optimum-intel, which pin transformers 4.x: `bash benchmarks/setup_st_backends.sh`
builds `.venv-st-backends` for them, and they run there as persistent child processes
(`st_backends_peer.py`), timed by this process around each call, interleaved with the rest;
`st-peer-env` is sentence-transformers torch in that environment, the cross-check that the two
environments run alike. A peer that cannot be loaded here is listed with the reason instead of
a row. Ours: runtime torch (fp32, bf16), onnx (fp32, dynamic int8, static int8),
openvino (fp32, bf16, static int8 in fp32 and bf16). Static int8 is calibrated on `--calibration`
(default: the SciFact folder, whose `train` queries are disjoint from the measured test queries).

Method
- Every variant scores every pair once (the quality pass: nDCG@10 against the qrels with
  pytrec_eval, Kendall tau and max |score diff| against our torch path). Then `--repeats` timed
  passes over the first `--speed-queries` queries, interleaved variant by variant so that load
  from other processes hits every variant alike. pairs/s is the median over all passes.
- Peak RSS cannot be separated per variant inside one process (the peak is monotone), so each
  variant is also run alone in a fresh child process (`--rss-child`) that imports, loads the
  model and scores the first `--rss-queries` queries (pairs handed over as JSON); its VmHWM is
  the peak RSS of that variant as a user would see it (Python, libraries, weights, activations).
- Machine load (`uptime`) is recorded before and after.
- Roofline: the machine's GEMM throughput is measured once per precision (torch matmul fp32 and
  bf16, `torch._int_mm` int8; (4096 x 384) @ (384 x 1536), the MiniLM feed-forward shape, best
  of several runs). The model's FLOPs per pair come from its config at the measured token
  lengths (2 x tokens x (4h^2 + 2hi) per layer for the projections, 4 x tokens^2 x h for
  attention; padding not counted, so the share is of useful work). Each path's share =
  pairs/s x FLOPs per pair / GEMM FLOP/s of the precision its matrix multiplies run in.

    python benchmarks/cross_encoder_speed.py                       # 50 queries x top-100
    python benchmarks/cross_encoder_speed.py --queries 10 --repeats 1 --json /tmp/ce.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
os.environ.setdefault("RANKBRIDGE_MODEL_DIR", str(SHARED / "models"))
os.environ.setdefault("RANKBRIDGE_DATA_DIR", str(SHARED / "data"))

VARIANTS = {
    "st": "sentence-transformers CrossEncoder.predict, defaults (torch fp32)",
    "st-peer-env": "sentence-transformers torch in .venv-st-backends (transformers 4.x), the cross-check of the two environments",
    "st-onnx": 'sentence-transformers CrossEncoder(backend="onnx")',
    "st-onnx-o3": 'sentence-transformers backend="onnx", export_optimized_onnx_model("O3")',
    "st-onnx-int8": 'sentence-transformers backend="onnx", export_dynamic_quantized_onnx_model("avx512_vnni")',
    "st-openvino": 'sentence-transformers CrossEncoder(backend="openvino")',
    "st-openvino-int8": 'sentence-transformers backend="openvino", export_static_quantized_openvino_model',
    "fastembed": "fastembed TextCrossEncoder on our plain ONNX export",
    "answerdotai": "AnswerDotAI rerankers Reranker(model_type='cross-encoder'), torch",
    "flashrank": "FlashRank Ranker on our plain ONNX export (its cache-folder layout)",
    "torch": "rankbridge runtime torch fp32",
    "torch-bf16": "rankbridge runtime torch, dtype bfloat16",
    "onnx": "rankbridge runtime onnx fp32 (fused)",
    "onnx-int8": "rankbridge runtime onnx, quantize int8 (dynamic)",
    "onnx-int8-static": "rankbridge runtime onnx, quantize int8-static (QDQ, calibrated)",
    "openvino": "rankbridge runtime openvino fp32",
    "openvino-bf16": "rankbridge runtime openvino, dtype bfloat16",
    "openvino-int8-static": "rankbridge runtime openvino, quantize int8-static (NNCF), fp32 elsewhere",
    "openvino-int8-static-bf16": "rankbridge runtime openvino, quantize int8-static (NNCF), bf16 elsewhere",
}
PEERS = ("st", "st-peer-env", "st-onnx", "st-onnx-o3", "st-onnx-int8", "st-openvino", "st-openvino-int8", "fastembed", "answerdotai", "flashrank")
# Run in `.venv-st-backends` (st_backends_peer.py) when that environment exists.
ST_BACKENDS = ("st-peer-env", "st-onnx", "st-onnx-o3", "st-onnx-int8", "st-openvino", "st-openvino-int8")
DEFAULT_ST_PYTHON = ROOT / ".venv-st-backends" / "bin" / "python"
# The precision each path's matrix multiplies run in (for the roofline share).
PRECISION = {
    "torch-bf16": "bf16", "openvino-bf16": "bf16", "onnx-int8": "int8", "onnx-int8-static": "int8",
    "openvino-int8-static": "int8", "openvino-int8-static-bf16": "int8", "st-onnx-int8": "int8",
    "st-openvino-int8": "int8",
}
# What a child peer reported its OpenVINO model to run in (st-openvino: bf16 where the CPU has it).
REPORTED_PRECISION: dict[str, str] = {}
OURS = {
    "torch": {"runtime": "torch"},
    "torch-bf16": {"runtime": "torch", "dtype": "bfloat16"},
    "onnx": {"runtime": "onnx"},
    "onnx-int8": {"runtime": "onnx", "quantize": "int8"},
    "onnx-int8-static": {"runtime": "onnx", "quantize": "int8-static"},
    "openvino": {"runtime": "openvino"},
    "openvino-bf16": {"runtime": "openvino", "dtype": "bfloat16"},
    "openvino-int8-static": {"runtime": "openvino", "quantize": "int8-static"},
    "openvino-int8-static-bf16": {"runtime": "openvino", "quantize": "int8-static", "dtype": "bfloat16"},
}


# ---------------------------------------------------------------------------- data


def load_scifact(folder: Path, num_queries: int, top_k: int):
    """The first `num_queries` test queries (qrels order) with their BM25 top-k over the corpus."""
    import bm25s

    corpus = [json.loads(line) for line in open(folder / "corpus.jsonl", encoding="utf-8")]
    queries = {}
    for line in open(folder / "queries.jsonl", encoding="utf-8"):
        row = json.loads(line)
        queries[row["_id"]] = row["text"]
    qrels: dict[str, dict[str, int]] = {}
    with open(folder / "qrels" / "test.tsv", encoding="utf-8") as handle:
        next(handle)
        for line in handle:
            qid, did, score = line.rstrip("\n").split("\t")
            qrels.setdefault(qid, {})[did] = int(score)
    qids = list(qrels)[:num_queries]
    texts = [f"{doc.get('title', '')} {doc.get('text', '')}".strip() for doc in corpus]
    stemmer = _stemmer()
    index = bm25s.BM25()
    index.index(bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False)
    query_tokens = bm25s.tokenize([queries[q] for q in qids], stopwords="en", stemmer=stemmer, show_progress=False)
    hits, _ = index.retrieve(query_tokens, k=top_k, show_progress=False)
    items = []
    for row, qid in enumerate(qids):
        docs = [int(j) for j in hits[row]]
        items.append({"qid": qid, "query": queries[qid], "doc_ids": [corpus[j]["_id"] for j in docs],
                      "texts": [texts[j] for j in docs]})
    return items, {q: qrels[q] for q in qids}


def _stemmer():
    try:
        import Stemmer

        return Stemmer.Stemmer("english")
    except ImportError:
        return None


# ---------------------------------------------------------------------------- variants


def build_variant(name: str, model: str, calibration: str | None = None, st_python: str | None = None):
    """Return score(items) -> list of score arrays (one per query, input order)."""
    from rankbridge.rerankers.core.paths import resolve_model

    path = resolve_model(model)
    if name in ST_BACKENDS and st_python:
        return ChildPeer(st_python, name, path, calibration)
    if name.startswith("st"):
        import torch

        st_model = _st_model(name, path, calibration)

        def score(items):
            pairs = [(it["query"], t) for it in items for t in it["texts"]]
            # Defaults (batch 32, its own length sort, max_length 512), but the raw logits
            # (identity instead of the default sigmoid, a cost-free post-step) so the score
            # difference column compares like with like.
            flat = st_model.predict(pairs, show_progress_bar=False, activation_fn=torch.nn.Identity())
            return _split(flat, items)

        return score
    if name == "fastembed":
        encoder = _fastembed_encoder(path)

        def score(items):
            pairs = [(it["query"], t) for it in items for t in it["texts"]]
            return _split(np.fromiter(encoder.rerank_pairs(pairs), dtype=np.float64), items)

        return score
    if name == "answerdotai":
        return _answerdotai(path)
    if name == "flashrank":
        return _flashrank(path)
    from rankbridge.rerankers import load_reranker

    spec = dict(OURS[name])
    if spec.get("quantize") == "int8-static":
        spec["calibration"] = calibration
    reranker = load_reranker({"backend": "cross-encoder", "model": path, **spec})

    def score(items):
        results = reranker.rank_many([it["query"] for it in items], [it["texts"] for it in items])
        return [np.array([r.score for r in sorted(res, key=lambda r: r.index)]) for res in results]

    score.reranker = reranker  # type: ignore[attr-defined]
    return score


def _st_work(path: str) -> Path:
    from rankbridge.rerankers.core.paths import cache_dir

    return cache_dir("bench-st", Path(path).name)


def _calibration_texts(calibration: str | None) -> list[str] | None:
    """sentence-transformers' static OpenVINO int8 calibrates on single strings (its default is
    GLUE SST-2 sentences); here the same pairs our static int8 calibrates on, query and document
    joined by a space."""
    if not calibration:
        return None
    from rankbridge.rerankers.runtime.calibration_data import read_calibration_pairs

    return [f"{q} {d}" for q, d in read_calibration_pairs(calibration, max_pairs=300)]


def _st_model(name: str, path: str, calibration: str | None):
    """sentence-transformers' CrossEncoder in this process (its ONNX / OpenVINO backends only
    where optimum is installed here; see `st_backends_peer.py` for the separate environment)."""
    if name == "st":
        from sentence_transformers import CrossEncoder

        return CrossEncoder(path, device="cpu")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import st_backends_peer

    return st_backends_peer.load(name, path, _st_work(path), _calibration_texts(calibration))


class ChildPeer:
    """A sentence-transformers backend variant in `.venv-st-backends`, as a persistent child
    (`st_backends_peer.py`): loaded once, then each call sends the pairs and reads the scores.
    Its time is the parent's wall clock around the call, JSON transfer included (milliseconds
    against the seconds of scoring)."""

    def __init__(self, python: str, name: str, path: str, calibration: str | None):
        import tempfile

        args = [python, str(Path(__file__).resolve().parent / "st_backends_peer.py"), "--variant", name,
                "--model", path, "--work", str(_st_work(path))]
        texts = _calibration_texts(calibration) if name == "st-openvino-int8" else None
        if texts:
            with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
                json.dump(texts, handle)
            args += ["--calibration-texts", handle.name]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        hello = self._read()
        if "error" in hello:
            self.proc.wait()
            raise RuntimeError(f"in {python}: {hello['error']}")
        self.versions = hello.get("versions", {})
        self.name = name

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the peer process exited with status {self.proc.wait()}")
        return json.loads(line)

    def _ask(self, request: dict) -> dict:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def __call__(self, items):
        pairs = [[it["query"], t] for it in items for t in it["texts"]]
        reply = self._ask({"pairs": pairs})
        if reply.get("precision") and self.name not in PRECISION:  # int8 rows keep their label
            REPORTED_PRECISION[self.name] = reply["precision"]
        return _split(np.asarray(reply["scores"], dtype=np.float64), items)

    def peak_rss_mb(self) -> float:
        return float(self._ask({"peak_rss_mb": True})["peak_rss_mb"])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)


def _answerdotai(model_path: str):
    """AnswerDotAI `rerankers` on the same local folder (its TransformerRanker: torch fp32)."""
    import importlib

    import torch

    # The repository root holds a folder named `rerankers` (mapped to rankbridge.rerankers); make
    # sure the PyPI package of that name is the one imported.
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT]
    sys.modules.pop("rerankers", None)
    answerdotai = importlib.import_module("rerankers")
    ranker = answerdotai.Reranker(model_path, model_type="cross-encoder", device="cpu", dtype=torch.float32, verbose=0)

    def score(items):
        out = []
        for it in items:
            result = ranker.rank(query=it["query"], docs=it["texts"], doc_ids=list(range(len(it["texts"]))))
            by_id = {r.document.doc_id: r.score for r in result.results}
            out.append(np.array([by_id[i] for i in range(len(it["texts"]))], dtype=np.float64))
        return out

    return score


def _flashrank(model_path: str):
    """FlashRank reads `<cache_dir>/<known model name>/<its file name>`: our plain ONNX export and
    the tokenizer files are laid out under one of its names, so it loads without downloading.
    It pads each query's list to its longest pair in one batch and returns sigmoid scores (turned
    back into logits here so the score columns compare like with like)."""
    import json as _json
    import shutil

    from flashrank import Ranker, RerankRequest
    from flashrank.Config import model_file_map
    from rankbridge.rerankers.runtime.onnx import export_onnx, onnx_cache_folder

    plain = export_onnx(model_path, quantize="none", optimize=False)
    root = onnx_cache_folder(model_path) / "flashrank"
    name = "ms-marco-MiniLM-L-12-v2"  # a name FlashRank knows; the files are ours
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    for file in ("tokenizer.json", "tokenizer_config.json", "config.json", "vocab.txt"):
        if (Path(model_path) / file).is_file():
            shutil.copy(Path(model_path) / file, folder / file)
    if not (folder / "special_tokens_map.json").is_file():
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(model_path)
        (folder / "special_tokens_map.json").write_text(_json.dumps(tok.special_tokens_map))
        config = _json.loads((folder / "tokenizer_config.json").read_text())
        config.setdefault("pad_token", tok.pad_token)
        config["model_max_length"] = min(int(config.get("model_max_length") or 512), 512)
        (folder / "tokenizer_config.json").write_text(_json.dumps(config))
    target = folder / model_file_map[name]
    if not target.exists():
        os.symlink(plain, target)
    ranker = Ranker(model_name=name, cache_dir=str(root), max_length=512, log_level="WARNING")

    def score(items):
        out = []
        for it in items:
            passages = [{"id": i, "text": t} for i, t in enumerate(it["texts"])]
            ranked = ranker.rerank(RerankRequest(query=it["query"], passages=passages))
            probs = np.zeros(len(passages))
            for row in ranked:
                probs[row["id"]] = float(row["score"])
            probs = np.clip(probs, 1e-12, 1 - 1e-12)
            out.append(np.log(probs) - np.log1p(-probs))
        return out

    return score


def _fastembed_encoder(model_path: str):
    """fastembed loads a local ONNX cross-encoder through `add_custom_model` + `specific_model_path`:
    a folder with model.onnx, tokenizer.json, tokenizer_config.json and config.json."""
    import shutil

    from fastembed.common.model_description import ModelSource
    from fastembed.rerank.cross_encoder import TextCrossEncoder
    from rankbridge.rerankers.runtime.onnx import export_onnx, onnx_cache_folder

    plain = export_onnx(model_path, quantize="none", optimize=False)
    folder = onnx_cache_folder(model_path) / "fastembed"
    folder.mkdir(exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "config.json", "special_tokens_map.json"):
        if (Path(model_path) / name).is_file():
            shutil.copy(Path(model_path) / name, folder / name)
    if not (folder / "model.onnx").exists():
        os.symlink(plain, folder / "model.onnx")
    name = f"local/{Path(model_path).name}"
    try:
        TextCrossEncoder.add_custom_model(name, sources=ModelSource(hf=name), model_file="model.onnx")
    except ValueError:
        pass  # already registered in this process
    return TextCrossEncoder(name, specific_model_path=str(folder))


def _split(flat: np.ndarray, items) -> list[np.ndarray]:
    out, start = [], 0
    for it in items:
        out.append(np.asarray(flat[start : start + len(it["texts"])], dtype=np.float64))
        start += len(it["texts"])
    return out


# ---------------------------------------------------------------------------- metrics


def ndcg_at_10(items, scores, qrels) -> float:
    import pytrec_eval

    run = {it["qid"]: {d: float(s) for d, s in zip(it["doc_ids"], sc)} for it, sc in zip(items, scores)}
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"})
    per_query = evaluator.evaluate(run)
    return float(np.mean([v["ndcg_cut_10"] for v in per_query.values()]))


def kendall(reference, scores) -> tuple[float, float]:
    from scipy.stats import kendalltau

    taus = [kendalltau(a, b)[0] for a, b in zip(reference, scores)]
    return float(np.mean(taus)), float(np.min(taus))


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except OSError:
        return "n/a"


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork+exec,
    so a child started by a large parent would report the parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ---------------------------------------------------------------------------- roofline


def gemm_throughput(m: int = 4096, k: int = 384, n: int = 1536, repeats: int = 5) -> dict[str, float]:
    """Measured GFLOP/s of one (m x k) @ (k x n) matrix multiply per precision, best of `repeats`."""
    import torch

    out = {}
    a32, b32 = torch.randn(m, k), torch.randn(k, n)
    cases = {
        "fp32": (lambda: a32 @ b32),
        "bf16": (lambda a=a32.bfloat16(), b=b32.bfloat16(): a @ b),
    }
    a8 = torch.randint(-128, 127, (m, k), dtype=torch.int8)
    b8 = torch.randint(-128, 127, (k, n), dtype=torch.int8)
    if hasattr(torch, "_int_mm"):
        cases["int8"] = lambda: torch._int_mm(a8, b8)
    for name, fn in cases.items():
        try:
            fn()
        except RuntimeError:
            continue
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            for _ in range(4):
                fn()
            best = min(best, (time.perf_counter() - started) / 4)
        out[name] = 2.0 * m * k * n / best / 1e9
    return out


def flops_per_pair(model_path: str, items) -> tuple[float, float]:
    """(mean GFLOPs per pair, mean tokens per pair) of the model on these pairs, from its config:
    per layer 2*t*(4h^2 + 2hi) for the projections and 4*t^2*h for attention (no padding)."""
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(model_path)
    tok = AutoTokenizer.from_pretrained(model_path)
    h, i, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    limit = min(int(getattr(config, "max_position_embeddings", 512)), 512)
    queries = [it["query"] for it in items for _ in it["texts"]]
    docs = [t for it in items for t in it["texts"]]
    lengths = np.array([len(x) for x in tok(queries, docs, truncation="only_second", max_length=limit)["input_ids"]])
    flops = layers * (2.0 * lengths * (4 * h * h + 2 * h * i) + 4.0 * lengths.astype(np.float64) ** 2 * h)
    return float(flops.mean() / 1e9), float(lengths.mean())


# ---------------------------------------------------------------------------- main


def write_report(path: str | Path, report: dict) -> None:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")


def rss_child(args) -> None:
    # The pairs come from the parent as JSON, so building the BM25 index (whose own peak would
    # mask the model's) never happens in this process.
    items = json.loads(Path(args.rss_items).read_text())
    score = build_variant(args.rss_child, args.model, args.calibration, args.st_python)
    score(items)
    # A peer in its own environment: the peak of that process, not of this thin parent.
    peak = score.peak_rss_mb() if isinstance(score, ChildPeer) else peak_rss_mb()
    print(json.dumps({"variant": args.rss_child, "peak_rss_mb": peak}))


def measure_rss(args, names, items) -> dict[str, dict]:
    import tempfile

    out = {}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(items, handle)
    try:
        for name in names:
            cmd = [sys.executable, __file__, "--rss-child", name, "--rss-items", handle.name, "--model", args.model,
                   "--calibration", args.calibration, "--st-python", args.st_python or ""]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
            out[name] = json.loads(lines[-1]) if proc.returncode == 0 and lines else {"error": proc.stderr[-500:]}
    finally:
        os.unlink(handle.name)
    return out


# Why a peer may be missing from this environment (appended to its load error).
_WHY = {
    "st-onnx": " (sentence-transformers' ONNX backend needs optimum-onnx, whose releases pin transformers<4.58;"
    " installing it would downgrade this environment's transformers 5.x: run benchmarks/setup_st_backends.sh,"
    " which builds .venv-st-backends, where these peers run as a child process)",
    "st-openvino": " (sentence-transformers' OpenVINO backend needs optimum-intel, whose releases pin"
    " transformers 4.x: run benchmarks/setup_st_backends.sh, which builds .venv-st-backends, where these peers"
    " run as a child process)",
}


def _short(exc: BaseException, limit: int = 400) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm-l6-ce-weak")
    parser.add_argument("--data", default=str(Path(os.environ["RANKBRIDGE_DATA_DIR"]) / "beir" / "scifact"))
    parser.add_argument("--calibration", default=None, help="static int8 calibration data (default: --data, train split)")
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--speed-queries", type=int, default=10, help="queries in each extra timed pass")
    parser.add_argument("--repeats", type=int, default=2, help="extra timed passes after the quality pass")
    parser.add_argument("--rss-queries", type=int, default=5)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--no-rss", action="store_true")
    parser.add_argument("--json", default=str(ROOT / "results" / "cross_encoder_speed.json"))
    parser.add_argument("--st-python", default=str(DEFAULT_ST_PYTHON) if DEFAULT_ST_PYTHON.exists() else "",
                        help="python of the environment for sentence-transformers' ONNX/OpenVINO backends "
                        "(default: .venv-st-backends when it exists; '' runs them in this process)")
    parser.add_argument("--rss-child", choices=list(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--rss-items", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.calibration = args.calibration or args.data
    if args.rss_child:
        rss_child(args)
        return 0

    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    load_before = uptime()
    items, qrels = load_scifact(Path(args.data), args.queries, args.candidates)
    speed_items = items[: args.speed_queries]
    num_pairs = sum(len(it["texts"]) for it in items)
    speed_pairs = sum(len(it["texts"]) for it in speed_items)

    variants, load_s, notes = {}, {}, {}
    for name in names:
        started = time.perf_counter()
        try:
            variants[name] = build_variant(name, args.model, args.calibration, args.st_python)
        except Exception as exc:  # a peer that cannot load here: reported, not fatal
            why = "" if name in ST_BACKENDS and args.st_python else _WHY.get("-".join(name.split("-")[:2]), "")
            notes[name] = f"could not load: {_short(exc)}" + why
            print(f"{name}: {notes[name]}", file=sys.stderr)
            continue
        load_s[name] = time.perf_counter() - started

    timings: dict[str, list[float]] = {n: [] for n in variants}
    scores: dict[str, list[np.ndarray]] = {}
    for name, score in list(variants.items()):  # quality pass, also the first timing
        started = time.perf_counter()
        try:
            scores[name] = score(items)
        except Exception as exc:
            notes[name] = f"failed while scoring: {_short(exc)}"
            print(f"{name}: {notes[name]}", file=sys.stderr)
            del variants[name], timings[name]
            continue
        timings[name].append(num_pairs / (time.perf_counter() - started))
        print(f"quality pass {name}: {timings[name][-1]:.1f} pairs/s", file=sys.stderr)
    for rep in range(args.repeats):
        for name, score in variants.items():
            started = time.perf_counter()
            score(speed_items)
            timings[name].append(speed_pairs / (time.perf_counter() - started))
        print(f"repeat {rep + 1}/{args.repeats} done", file=sys.stderr)

    from rankbridge.rerankers.core.paths import resolve_model

    gemm = gemm_throughput()
    gflops_pair, mean_tokens = flops_per_pair(resolve_model(args.model), items)
    rss = {} if args.no_rss else measure_rss(args, list(variants), items[: args.rss_queries])
    ref_name = "torch" if "torch" in scores else ("st" if "st" in scores else None)
    reference = scores.get(ref_name) if ref_name else None
    ref_ndcg = ndcg_at_10(items, reference, qrels) if reference is not None else None
    st_speed = statistics.median(timings["st"]) if "st" in timings else None
    rows = []
    for name in variants:
        speed = statistics.median(timings[name])
        precision = PRECISION.get(name) or REPORTED_PRECISION.get(name, "fp32")
        row = {
            "variant": name,
            "peer": name in PEERS,
            "description": VARIANTS[name],
            "pairs_per_s": speed,
            "pairs_per_s_all": timings[name],
            "speedup_vs_st": speed / st_speed if st_speed else None,
            "ndcg@10": ndcg_at_10(items, scores[name], qrels),
            "load_s": load_s[name],
            "peak_rss_mb": rss.get(name, {}).get("peak_rss_mb"),
            "rss_error": rss.get(name, {}).get("error"),
            "precision": precision,
            "gflops_per_s": speed * gflops_pair,
            "roofline_share": speed * gflops_pair / gemm[precision] if precision in gemm else None,
        }
        if reference is not None:
            row["kendall_tau_vs_fp32_mean"], row["kendall_tau_vs_fp32_min"] = kendall(reference, scores[name])
            row["max_abs_score_diff_vs_fp32"] = float(max(np.abs(a - b).max() for a, b in zip(reference, scores[name])))
            row["ndcg_diff_vs_fp32"] = row["ndcg@10"] - ref_ndcg
            row["in_gate"] = bool(row["kendall_tau_vs_fp32_mean"] >= 0.99 and abs(row["ndcg_diff_vs_fp32"]) <= 0.005)
        model_file = getattr(getattr(getattr(variants[name], "reranker", None), "_forward", None), "model_file", None)
        row["model_file"] = str(model_file) if model_file else None
        rows.append(row)

    def best(peer: bool):
        inside = [r for r in rows if r["peer"] == peer and r.get("in_gate")]
        return max(inside, key=lambda r: r["pairs_per_s"]) if inside else None

    ours, peer = best(False), best(True)
    summary = {
        "gate": "Kendall tau (mean over queries) >= 0.99 against fp32 torch and |nDCG@10 difference| <= 0.005",
        "our_best_in_gate": ours and ours["variant"],
        "our_best_vs_st": ours and ours["speedup_vs_st"],
        "best_peer_in_gate": peer and peer["variant"],
        "our_best_vs_best_peer": (ours["pairs_per_s"] / peer["pairs_per_s"]) if ours and peer else None,
    }
    report = {
        "benchmark": "cross_encoder_speed",
        "model": args.model,
        "queries": len(items),
        "candidates_per_query": args.candidates,
        "pairs_quality_pass": num_pairs,
        "pairs_per_timed_repeat": speed_pairs,
        "repeats": args.repeats,
        "threads": os.cpu_count(),
        "load_before": load_before,
        "load_after": uptime(),
        "calibration": args.calibration,
        "reference": ref_name,
        "gemm_gflops_per_s": gemm,
        "gemm_method": "torch matmul (4096x384)@(384x1536) fp32 / bf16, torch._int_mm int8; best of 5",
        "model_gflops_per_pair": gflops_pair,
        "mean_tokens_per_pair": mean_tokens,
        "summary": summary,
        "notes": notes,
        "st_backends_environment": next((v.versions for v in variants.values() if isinstance(v, ChildPeer)), None),
        "rss_method": "fresh child process per variant: import + load + score the first "
        f"{args.rss_queries} queries (pairs passed as JSON, no BM25 in the child); VmHWM",
        "rows": rows,
    }
    print(f"\nSciFact test, {len(items)} queries x BM25 top-{args.candidates} ({num_pairs} pairs), model {args.model}")
    print(f"load before: {load_before}\nload after:  {report['load_after']}")
    print("GEMM GFLOP/s: " + ", ".join(f"{k} {v:.0f}" for k, v in gemm.items())
          + f"; model {gflops_pair:.2f} GFLOP/pair at {mean_tokens:.0f} tokens/pair")
    header = (f"{'variant':<26} {'pairs/s':>8} {'vs ST':>6} {'nDCG@10':>8} {'tau':>7} {'max|d|':>8} "
              f"{'RSS MB':>7} {'prec':>5} {'roof':>6} gate")
    print(header)
    print("-" * len(header))
    for row in rows:
        tau = row.get("kendall_tau_vs_fp32_mean")
        diff = row.get("max_abs_score_diff_vs_fp32")
        rss_mb = row["peak_rss_mb"]
        share = row["roofline_share"]
        print(
            f"{row['variant']:<26} {row['pairs_per_s']:>8.1f} {row['speedup_vs_st'] or 0:>5.2f}x {row['ndcg@10']:>8.4f} "
            f"{'' if tau is None else f'{tau:.4f}':>7} {'' if diff is None else f'{diff:.2e}':>8} "
            f"{'' if rss_mb is None else f'{rss_mb:.0f}':>7} {row['precision']:>5} "
            f"{'' if share is None else f'{share:.1%}':>6} {'yes' if row.get('in_gate') else 'no'}"
        )
    for name, note in notes.items():
        print(f"{name}: {note}")
    print(f"summary: {json.dumps(summary)}")
    if report["st_backends_environment"]:
        print(f"sentence-transformers backends ran in {args.st_python}: {json.dumps(report['st_backends_environment'])}")
    for score in variants.values():
        if isinstance(score, ChildPeer):
            score.close()
    write_report(args.json, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
