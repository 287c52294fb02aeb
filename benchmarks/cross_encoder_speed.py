"""Cross-encoder speed on CPU: sentence-transformers defaults vs fastembed vs our torch / ONNX fp32 / ONNX int8 / torch bf16.

SciFact (BEIR) test queries, each with its BM25 top-k candidates from the whole corpus (bm25s,
title + text), scored by the MiniLM-L6 cross-encoder (`minilm-l6-ce-weak`, same shape and cost as
cross-encoder/ms-marco-MiniLM-L-6-v2; weak, so nDCG here only shows that the faster paths rank
the same, never a quality claim).

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
    "st": "(a) sentence-transformers CrossEncoder.predict, defaults",
    "fastembed": "(b) fastembed TextCrossEncoder on our ONNX export",
    "torch": "(c) rankbridge cross-encoder, runtime torch",
    "onnx": "(d) rankbridge cross-encoder, runtime onnx fp32",
    "onnx-int8": "(e) rankbridge cross-encoder, runtime onnx int8",
    "torch-bf16": "(f) rankbridge cross-encoder, runtime torch, dtype bfloat16 (CPUs with AVX512-BF16/AMX)",
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


def build_variant(name: str, model: str):
    """Return score(items) -> list of score arrays (one per query, input order)."""
    from rankbridge.rerankers.core.paths import resolve_model

    path = resolve_model(model)
    if name == "st":
        import torch
        from sentence_transformers import CrossEncoder

        st_model = CrossEncoder(path, device="cpu")

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
    from rankbridge.rerankers import load_reranker

    spec = {
        "torch": {"runtime": "torch"},
        "onnx": {"runtime": "onnx"},
        "onnx-int8": {"runtime": "onnx", "quantize": "int8"},
        "torch-bf16": {"runtime": "torch", "dtype": "bfloat16"},
    }[name]
    reranker = load_reranker({"backend": "cross-encoder", "model": path, **spec})

    def score(items):
        results = reranker.rank_many([it["query"] for it in items], [it["texts"] for it in items])
        return [np.array([r.score for r in sorted(res, key=lambda r: r.index)]) for res in results]

    score.reranker = reranker  # type: ignore[attr-defined]
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
    score = build_variant(args.rss_child, args.model)
    score(items)
    print(json.dumps({"variant": args.rss_child, "peak_rss_mb": peak_rss_mb()}))


def measure_rss(args, names, items) -> dict[str, dict]:
    import tempfile

    out = {}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(items, handle)
    try:
        for name in names:
            cmd = [sys.executable, __file__, "--rss-child", name, "--rss-items", handle.name, "--model", args.model]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
            out[name] = json.loads(lines[-1]) if proc.returncode == 0 and lines else {"error": proc.stderr[-500:]}
    finally:
        os.unlink(handle.name)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm-l6-ce-weak")
    parser.add_argument("--data", default=str(Path(os.environ["RANKBRIDGE_DATA_DIR"]) / "beir" / "scifact"))
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--speed-queries", type=int, default=10, help="queries in each extra timed pass")
    parser.add_argument("--repeats", type=int, default=2, help="extra timed passes after the quality pass")
    parser.add_argument("--rss-queries", type=int, default=5)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--no-rss", action="store_true")
    parser.add_argument("--json", default=str(ROOT / "results" / "cross_encoder_speed.json"))
    parser.add_argument("--rss-child", choices=list(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--rss-items", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_child:
        rss_child(args)
        return 0

    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    load_before = uptime()
    items, qrels = load_scifact(Path(args.data), args.queries, args.candidates)
    speed_items = items[: args.speed_queries]
    num_pairs = sum(len(it["texts"]) for it in items)
    speed_pairs = sum(len(it["texts"]) for it in speed_items)

    variants, load_s, notes = {}, {}, {}
    for name in names:
        started = time.perf_counter()
        try:
            variants[name] = build_variant(name, args.model)
        except Exception as exc:  # e.g. fastembed refusing a local model: reported, not fatal
            notes[name] = f"could not load: {type(exc).__name__}: {exc}"
            print(f"{name}: {notes[name]}", file=sys.stderr)
            continue
        load_s[name] = time.perf_counter() - started

    timings: dict[str, list[float]] = {n: [] for n in variants}
    scores: dict[str, list[np.ndarray]] = {}
    for name, score in variants.items():  # quality pass, also the first timing
        started = time.perf_counter()
        scores[name] = score(items)
        timings[name].append(num_pairs / (time.perf_counter() - started))
        print(f"quality pass {name}: {timings[name][-1]:.1f} pairs/s", file=sys.stderr)
    for rep in range(args.repeats):
        for name, score in variants.items():
            started = time.perf_counter()
            score(speed_items)
            timings[name].append(speed_pairs / (time.perf_counter() - started))
        print(f"repeat {rep + 1}/{args.repeats} done", file=sys.stderr)

    rss = {} if args.no_rss else measure_rss(args, list(variants), items[: args.rss_queries])
    reference = scores.get("torch")
    st_speed = statistics.median(timings["st"]) if "st" in timings else None
    rows = []
    for name in variants:
        speed = statistics.median(timings[name])
        row = {
            "variant": name,
            "description": VARIANTS[name],
            "pairs_per_s": speed,
            "pairs_per_s_all": timings[name],
            "speedup_vs_st": speed / st_speed if st_speed else None,
            "ndcg@10": ndcg_at_10(items, scores[name], qrels),
            "load_s": load_s[name],
            "peak_rss_mb": rss.get(name, {}).get("peak_rss_mb"),
        }
        if reference is not None:
            row["kendall_tau_vs_torch_mean"], row["kendall_tau_vs_torch_min"] = kendall(reference, scores[name])
            row["max_abs_score_diff_vs_torch"] = float(max(np.abs(a - b).max() for a, b in zip(reference, scores[name])))
        if hasattr(variants[name], "reranker"):
            row["onnx_file"] = str(getattr(variants[name].reranker._forward, "onnx_path", "")) or None
        rows.append(row)

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
        "notes": notes,
        "rss_method": "fresh child process per variant: import + load + score the first "
        f"{args.rss_queries} queries (pairs passed as JSON, no BM25 in the child); VmHWM",
        "rows": rows,
    }
    print(f"\nSciFact test, {len(items)} queries x BM25 top-{args.candidates} ({num_pairs} pairs), model {args.model}")
    print(f"load before: {load_before}\nload after:  {report['load_after']}")
    header = f"{'variant':<11} {'pairs/s':>8} {'vs ST':>6} {'nDCG@10':>8} {'tau(torch)':>10} {'max|d|':>8} {'RSS MB':>7}"
    print(header)
    print("-" * len(header))
    for row in rows:
        tau = row.get("kendall_tau_vs_torch_mean")
        diff = row.get("max_abs_score_diff_vs_torch")
        rss_mb = row["peak_rss_mb"]
        print(
            f"{row['variant']:<11} {row['pairs_per_s']:>8.1f} {row['speedup_vs_st'] or 0:>5.2f}x {row['ndcg@10']:>8.4f} "
            f"{'' if tau is None else f'{tau:.4f}':>10} {'' if diff is None else f'{diff:.2e}':>8} "
            f"{'' if rss_mb is None else f'{rss_mb:.0f}':>7}"
        )
    for name, note in notes.items():
        print(f"{name}: {note}")
    write_report(args.json, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
