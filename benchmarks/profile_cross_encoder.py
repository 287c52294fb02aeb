"""Where a cross-encoder's CPU time goes: torch profiler over sentence-transformers and our torch
paths, OpenVINO's per-node performance counters over our openvino paths.

Same inputs as `cross_encoder_speed.py` (SciFact test queries x BM25 top-k, MiniLM-L6). For each
variant, one warm-up call, then one profiled scoring pass; the table lists the operators by self
CPU time with their share of the pass, so a missed speed target can be traced to the kernels
(matmul, attention, layer norm, tokenization outside the model...). OpenVINO rows are
`node type [kernel]` (e.g. `FullyConnected [brgemm_avx512_amx_bf16]`; `Subgraph` is its fused
attention block), summed over every inference of the pass.

    python benchmarks/profile_cross_encoder.py                      # all variants, 3 queries
    python benchmarks/profile_cross_encoder.py --variants torch,openvino-bf16 --queries 5
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cross_encoder_speed as bench  # noqa: E402  (sets the offline environment and paths)

TORCH_VARIANTS = ("st", "torch", "torch-bf16")
OPENVINO_VARIANTS = ("openvino", "openvino-bf16", "openvino-int8-static-bf16")


def profile_variant(name: str, model: str, items, top: int) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile

    score = bench.build_variant(name, model)
    score(items[:1])  # warm-up: lazy initialisation stays out of the profile
    started = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        score(items)
    wall = time.perf_counter() - started
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total_us = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    rows = [
        {"op": e.key, "self_cpu_ms": e.self_cpu_time_total / 1000.0, "share": e.self_cpu_time_total / total_us,
         "calls": e.count}
        for e in events[:top]
    ]
    return {"variant": name, "threads": torch.get_num_threads(), "wall_s": wall,
            "profiled_cpu_ms": total_us / 1000.0, "top_ops": rows}


def profile_openvino(name: str, model: str, items, top: int, calibration: str) -> dict:
    """OpenVINO's performance counters (PERF_COUNT) per node, summed by node type and kernel."""
    import collections

    import openvino as ov

    score = bench.build_variant(name, model, calibration)
    forward = score.reranker._forward
    config = {"PERFORMANCE_HINT": "LATENCY", "PERF_COUNT": True,
              "INFERENCE_PRECISION_HINT": forward.compiled.get_property("INFERENCE_PRECISION_HINT")}
    compiled = ov.Core().compile_model(str(forward.xml), "CPU", config)
    request = compiled.create_infer_request()
    names = {port.get_any_name() for port in compiled.inputs}
    totals: collections.Counter = collections.Counter()
    calls: collections.Counter = collections.Counter()

    def profiled(feeds):
        out = request.infer({k: v for k, v in feeds.items() if k in names})[compiled.output(0)]
        for info in request.profiling_info:
            key = f"{info.node_type} [{info.exec_type}]"
            totals[key] += info.real_time.total_seconds() * 1e6
            calls[key] += 1
        return out.copy()

    score.reranker._forward = profiled
    score(items[:1])  # warm-up
    totals.clear()
    calls.clear()
    started = time.perf_counter()
    score(items)
    wall = time.perf_counter() - started
    total_us = sum(totals.values()) or 1.0
    rows = [{"op": k, "self_cpu_ms": v / 1000.0, "share": v / total_us, "calls": calls[k]}
            for k, v in totals.most_common(top)]
    return {"variant": name, "threads": compiled.get_property("INFERENCE_NUM_THREADS"), "wall_s": wall,
            "profiled_cpu_ms": total_us / 1000.0, "top_ops": rows}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm-l6-ce-weak")
    parser.add_argument("--data", default=str(Path(os.environ["RANKBRIDGE_DATA_DIR"]) / "beir" / "scifact"))
    parser.add_argument("--queries", type=int, default=3)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--variants", default=",".join(TORCH_VARIANTS + OPENVINO_VARIANTS))
    parser.add_argument("--calibration", default=None, help="static int8 calibration data (default: --data)")
    parser.add_argument("--top", type=int, default=10, help="operators listed per variant")
    parser.add_argument("--json", default=str(bench.ROOT / "results" / "profile_cross_encoder.json"))
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = [n for n in names if n not in TORCH_VARIANTS + OPENVINO_VARIANTS]
    if unknown:
        parser.error(f"--variants takes {TORCH_VARIANTS + OPENVINO_VARIANTS}, got {unknown}")
    calibration = args.calibration or args.data

    items, _ = bench.load_scifact(Path(args.data), args.queries, args.candidates)
    pairs = sum(len(it["texts"]) for it in items)
    report = {"benchmark": "profile_cross_encoder", "model": args.model, "pairs": pairs,
              "load": bench.uptime(), "variants": [
                  profile_openvino(n, args.model, items, args.top, calibration) if n in OPENVINO_VARIANTS
                  else profile_variant(n, args.model, items, args.top)
                  for n in names
              ]}
    for variant in report["variants"]:
        print(f"\n{variant['variant']}: {pairs} pairs in {variant['wall_s']:.1f} s "
              f"({pairs / variant['wall_s']:.1f} pairs/s under the profiler), {variant['threads']} threads")
        print(f"  {'operator':<44} {'self ms':>9} {'share':>6} {'calls':>6}")
        for row in variant["top_ops"]:
            print(f"  {row['op'][:44]:<44} {row['self_cpu_ms']:>9.0f} {row['share']:>6.1%} {row['calls']:>6}")
    print()
    bench.write_report(args.json, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
