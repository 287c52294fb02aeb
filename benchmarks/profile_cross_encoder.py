"""Where a cross-encoder's CPU time goes: torch profiler over sentence-transformers and our paths.

Same inputs as `cross_encoder_speed.py` (SciFact test queries x BM25 top-k, MiniLM-L6). For each
torch-based variant, one warm-up call, then `torch.profiler` over a scoring pass; the table lists
the operators by self CPU time with their share of the pass, so a missed speed target can be
traced to the kernels (matmul, attention, layer norm, tokenization outside the model...).

    python benchmarks/profile_cross_encoder.py                      # st, torch, torch-bf16, 3 queries
    python benchmarks/profile_cross_encoder.py --variants torch --queries 5
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm-l6-ce-weak")
    parser.add_argument("--data", default=str(Path(os.environ["RANKBRIDGE_DATA_DIR"]) / "beir" / "scifact"))
    parser.add_argument("--queries", type=int, default=3)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--variants", default=",".join(TORCH_VARIANTS))
    parser.add_argument("--top", type=int, default=10, help="operators listed per variant")
    parser.add_argument("--json", default=str(bench.ROOT / "results" / "profile_cross_encoder.json"))
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = [n for n in names if n not in TORCH_VARIANTS]
    if unknown:
        parser.error(f"--variants takes torch-based variants {TORCH_VARIANTS}, got {unknown}")

    items, _ = bench.load_scifact(Path(args.data), args.queries, args.candidates)
    pairs = sum(len(it["texts"]) for it in items)
    report = {"benchmark": "profile_cross_encoder", "model": args.model, "pairs": pairs,
              "load": bench.uptime(), "variants": [profile_variant(n, args.model, items, args.top) for n in names]}
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
