"""`rankbridge serve` as a user runs it: options validated before start, a real process that
finishes in-flight requests on SIGTERM and never logs its API key, and `--workers N`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from serve_support import DOCS, QUERY

from rankbridge.integrations.cli.main import main
from rankbridge.integrations.server.runner import free_port

HERE = Path(__file__).resolve().parent

pytestmark = pytest.mark.slow  # subprocesses


@pytest.mark.parametrize(
    "options, words",
    [
        (["--reranker", '{"backend": "lexical", "k1": -1}'], ["k1"]),
        (["--reranker", "no-such-backend"], ["unknown backend", "no-such-backend"]),
        (["--reranker", "lexical", "--reranker", "lexical"], ["'lexical'", "NAME=SPEC"]),
        (["--reranker", "x={not json"], ["read as an inline mapping", "JSON", "YAML"]),
        (["--reranker", "lexical", "--max-documents", "0"], ["max_documents"]),
    ],
)
def test_bad_options_exit_2_naming_the_problem(capsys, options, words):
    assert main(["serve", *options, "--port", "1"]) == 2
    err = capsys.readouterr().err
    for word in words:
        assert word in err, err


def start(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    code = (
        "import sys; sys.path.insert(0, sys.argv.pop(1)); import serve_fakes; "
        "from rankbridge.integrations.cli.main import main; sys.exit(main(sys.argv[1:]))"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code, str(HERE), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})},
    )


def wait_ready(proc: subprocess.Popen, url: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}: {proc.stderr.read()}")
        try:
            if httpx.get(url + "/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("server did not get ready")


def test_sigterm_lets_the_request_in_flight_finish_and_the_key_is_never_logged(tmp_path):
    key = "sk-live-do-not-log-7d3e"
    port = free_port()
    marker = tmp_path / "scoring"
    spec = json.dumps({"backend": "serve-test-slow", "marker": str(marker), "delay_s": 2.0})
    proc = start(["-vv", "serve", "--reranker", f"slow={spec}", "--port", str(port), "--access-log"],
                 env={"RANKBRIDGE_API_KEY": key})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, url)
        assert httpx.post(url + "/rerank", json={"query": QUERY, "texts": DOCS}).status_code == 401
        answer: dict = {}

        def call():
            answer["r"] = httpx.post(url + "/v2/rerank", json={"model": "slow", "query": QUERY, "documents": DOCS},
                                     headers={"Authorization": f"Bearer {key}"}, timeout=60)

        caller = threading.Thread(target=call)
        caller.start()
        while not marker.exists():
            assert proc.poll() is None
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)  # the request is being scored right now
        caller.join(60)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert answer["r"].status_code == 200
    assert len(answer["r"].json()["results"]) == len(DOCS)
    assert proc.returncode == 0, err
    assert key not in out and key not in err
    assert '"POST /rerank HTTP/1.1" 401' in out  # uvicorn's access log ran (to stdout), and printed no header


def test_workers_share_the_port_and_metrics_add_up():
    port = free_port()
    proc = start(["serve", "--reranker", "lexical", "--port", str(port), "--workers", "2"])
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, url)
        n = 12
        for i in range(n):  # a new connection each: the kernel spreads them over the workers
            r = httpx.post(url + "/rerank", json={"query": f"{QUERY} {i}", "texts": DOCS})
            assert r.status_code == 200
        text = httpx.get(url + "/metrics").text
        line = next(ln for ln in text.splitlines() if ln.startswith('rankbridge_requests_total{route="/rerank",status="200"}'))
        assert float(line.rsplit(" ", 1)[1]) == n
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
