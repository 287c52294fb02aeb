"""Load on `rankbridge serve` over loopback: pairs/s and latency at 1, 8 and 32 concurrent
clients, cross-request batching on vs off, against the same model called in-process.

Each request is 1 SciFact test query x its BM25 top-`--candidates` documents (bm25s over the
whole corpus, title + text), posted to `POST /v2/rerank` (Cohere v2) by an asyncio + httpx
client. The server is a real `rankbridge serve` process (one worker) started per
(backend, batching) setting, so client and server do not share a GIL; they do share the CPU.

Method
- For each backend (`cross-encoder`: minilm-l6-ce-weak on ONNX Runtime fp32; `lexical`: BM25 over
  the candidates, i.e. the server's overhead alone) and each of batching on / off
  (`--no-batching`): start the server, warm it up, then for each client count run `--requests`
  requests, `c` in flight at a time (each client posts its next request when its last one is
  answered). pairs/s = requests x candidates / wall time; p50 / p99 over the requests'
  latencies; errors = non-200 answers or transport errors; requests per batch from the
  server's own `/metrics`.
- Baselines in this process once the servers are gone: offline `rank_many` over the same
  requests' pairs (one call), and in-process `rank` latency (one request at a time).
- Targets (the issue's closing note): at 32 clients batching on >= 90% of offline pairs/s and
  >= 1.5x batching off; at 1 client p50 within 10 ms of in-process `rank`; zero errors.
  Reported as met or not; measured, never asserted.

    python benchmarks/serve_load.py                               # 96 requests per setting
    python benchmarks/serve_load.py --requests 8 --concurrency 1 8 --queries 4 --json /tmp/serve.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RANKBRIDGE_MODEL_DIR", str(SHARED / "models"))
os.environ.setdefault("RANKBRIDGE_DATA_DIR", str(SHARED / "data"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cross_encoder_speed import load_scifact, write_report  # noqa: E402

BACKENDS = {
    "cross-encoder": {"backend": "cross-encoder", "model": "minilm-l6-ce-weak", "runtime": "onnx"},
    "lexical": {"backend": "lexical"},
}


# ---------------------------------------------------------------------------- the server


def start_server(name: str, spec: dict, port: int, args, batching: bool) -> subprocess.Popen:
    cmd = [
        sys.executable, "-m", "rankbridge.integrations.cli.main", "serve",
        "--reranker", f"{name}={json.dumps(spec)}", "--port", str(port),
        "--max-wait-ms", str(args.max_wait_ms), "--max-batch-pairs", str(args.max_batch_pairs),
        "--max-documents", str(max(1000, args.candidates)),
    ]
    if not batching:
        cmd.append("--no-batching")
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_ready(proc: subprocess.Popen, url: str, timeout: float = 600) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(url + "/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the server did not get ready")


def stop_server(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()


def batch_counts(url: str, name: str) -> tuple[float, float]:
    """(sum, count) of the server's requests-per-batch histogram."""
    import httpx

    total = count = 0.0
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith(f'rankbridge_batch_requests_sum{{model="{name}"}}'):
            total = float(line.rsplit(" ", 1)[1])
        elif line.startswith(f'rankbridge_batch_requests_count{{model="{name}"}}'):
            count = float(line.rsplit(" ", 1)[1])
    return total, count


# ---------------------------------------------------------------------------- the load


async def run_load(url: str, name: str, items: list[dict], requests: int, concurrency: int) -> dict:
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    next_request = 0

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal next_request
        while next_request < requests:
            i = next_request
            next_request += 1
            item = items[i % len(items)]
            body = {"model": name, "query": item["query"], "documents": item["texts"]}
            t0 = time.perf_counter()
            try:
                r = await http.post("/v2/rerank", json=body)
                ok = r.status_code == 200 and len(r.json()["results"]) == len(item["texts"])
                if not ok:
                    errors.append(f"{r.status_code}: {r.text[:200]}")
            except httpx.HTTPError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
            latencies.append(time.perf_counter() - t0)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as http:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    pairs = sum(len(items[i % len(items)]["texts"]) for i in range(requests))
    return {
        "clients": concurrency,
        "requests": requests,
        "pairs": pairs,
        "wall_s": wall,
        "pairs_per_s": pairs / wall,
        "p50_ms": 1000 * float(np.percentile(latencies, 50)),
        "p99_ms": 1000 * float(np.percentile(latencies, 99)),
        "errors": len(errors),
        "first_errors": errors[:3],
    }


# ---------------------------------------------------------------------------- baselines


def in_process(spec: dict, items: list[dict], requests: int, latency_requests: int) -> dict:
    from rankbridge.rerankers import load_reranker

    reranker = load_reranker(spec)
    chosen = [items[i % len(items)] for i in range(requests)]
    reranker.rank(chosen[0]["query"], chosen[0]["texts"])  # warm-up
    t0 = time.perf_counter()
    reranker.rank_many([it["query"] for it in chosen], [it["texts"] for it in chosen])
    wall = time.perf_counter() - t0
    pairs = sum(len(it["texts"]) for it in chosen)
    latencies = []
    for it in chosen[:latency_requests]:
        t = time.perf_counter()
        reranker.rank(it["query"], it["texts"])
        latencies.append(time.perf_counter() - t)
    reranker.close()
    return {
        "offline_rank_many_pairs_per_s": pairs / wall,
        "in_process_rank_p50_ms": 1000 * statistics.median(latencies),
        "in_process_rank_requests": len(latencies),
    }


# ---------------------------------------------------------------------------- report


def targets(rows: list[dict], base: dict, clients: list[int]) -> dict:
    out = {}
    top, one = max(clients), min(clients)
    on = next((r for r in rows if r["batching"] and r["clients"] == top), None)
    off = next((r for r in rows if not r["batching"] and r["clients"] == top), None)
    single = next((r for r in rows if r["batching"] and r["clients"] == one), None)
    if on:
        ratio = on["pairs_per_s"] / base["offline_rank_many_pairs_per_s"]
        out[f"batching on at {top} clients / offline rank_many >= 0.90"] = {"value": round(ratio, 3), "met": ratio >= 0.9}
    if on and off:
        ratio = on["pairs_per_s"] / off["pairs_per_s"]
        out[f"batching on / off at {top} clients >= 1.5"] = {"value": round(ratio, 3), "met": ratio >= 1.5}
    if single:
        gap = single["p50_ms"] - base["in_process_rank_p50_ms"]
        out[f"p50 at {one} client - in-process rank p50 <= 10 ms"] = {"value": round(gap, 2), "met": gap <= 10}
    errors = sum(r["errors"] for r in rows)
    out["errors == 0"] = {"value": errors, "met": errors == 0}
    return out


def print_table(backend: str, rows: list[dict], base: dict, met: dict) -> None:
    print(f"\n{backend}")
    print(f"{'batching':>8} {'clients':>7} {'requests':>8} {'pairs/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} {'req/batch':>9}")
    for r in rows:
        print(
            f"{'on' if r['batching'] else 'off':>8} {r['clients']:>7} {r['requests']:>8} {r['pairs_per_s']:>9.1f} "
            f"{r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['errors']:>6} {r['requests_per_batch']:>9.2f}"
        )
    print(f"offline rank_many: {base['offline_rank_many_pairs_per_s']:.1f} pairs/s; "
          f"in-process rank p50: {base['in_process_rank_p50_ms']:.1f} ms")
    for name, result in met.items():
        print(f"  [{'met' if result['met'] else 'NOT met'}] {name}: {result['value']}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--beir", type=Path, default=Path(os.environ["RANKBRIDGE_DATA_DIR"]) / "beir" / "scifact")
    p.add_argument("--queries", type=int, default=100, help="distinct SciFact test queries the requests cycle through")
    p.add_argument("--candidates", type=int, default=50, help="BM25 candidates per request")
    p.add_argument("--requests", type=int, default=96, help="requests per (backend, batching, clients) setting")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=list(BACKENDS))
    p.add_argument("--max-wait-ms", type=float, default=2.0)
    p.add_argument("--max-batch-pairs", type=int, default=1024)
    p.add_argument("--json", default=str(Path(__file__).with_name("serve_load_results.json")))
    args = p.parse_args(argv)
    # a SIGTERM (timeout, Ctrl-C from a runner) unwinds through the `finally` that stops the server
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    from rankbridge.integrations.server.runner import free_port

    items, _ = load_scifact(args.beir, args.queries, args.candidates)
    report = {
        "setup": {
            "requests": args.requests, "candidates": args.candidates, "queries": len(items),
            "concurrency": args.concurrency, "max_wait_ms": args.max_wait_ms, "max_batch_pairs": args.max_batch_pairs,
            "cpus": os.cpu_count(), "load_before": os.getloadavg(), "route": "/v2/rerank",
        },
        "backends": {},
    }
    for backend in args.backends:
        spec = BACKENDS[backend]
        rows = []
        for batching in (True, False):
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            proc = start_server(backend, spec, port, args, batching)
            try:
                wait_ready(proc, url)
                asyncio.run(run_load(url, backend, items, max(args.concurrency), max(args.concurrency)))  # warm-up
                for clients in args.concurrency:
                    before = batch_counts(url, backend)
                    row = asyncio.run(run_load(url, backend, items, args.requests, clients))
                    after = batch_counts(url, backend)
                    batches = after[1] - before[1]
                    row["requests_per_batch"] = (after[0] - before[0]) / batches if batches else 0.0
                    row["batching"] = batching
                    rows.append(row)
                    print(f"  {backend} batching {'on' if batching else 'off'}, {clients} clients: "
                          f"{row['pairs_per_s']:.1f} pairs/s, p50 {row['p50_ms']:.1f} ms, {row['errors']} errors", flush=True)
            finally:
                stop_server(proc)
        base = in_process(spec, items, args.requests, min(args.requests, 32))
        met = targets(rows, base, args.concurrency)
        report["backends"][backend] = {"spec": spec, "rows": rows, "baselines": base, "targets": met}
        print_table(backend, rows, base, met)
    report["setup"]["load_after"] = os.getloadavg()
    write_report(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
