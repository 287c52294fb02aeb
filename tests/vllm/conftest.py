"""The real vLLM CPU server for the listwise integration tests: one per test session.

`.ci/setup_vllm` creates the vLLM environment (outside the clone) and the SmolLM2-135M-Instruct
safetensors folder. The `vllm_server` fixture starts
`python -m vllm.entrypoints.openai.api_server` from that environment on 127.0.0.1 with a free port,
waits for /health, and stops it at the end of the session. In CI (CI=true) a missing vLLM
environment is a failure; on a developer machine the tests are skipped with the reason.

Developers iterating on these tests may start the server once themselves with the same flags
(`server_command`) and point the tests at it: RANKBRIDGE_VLLM_URL=http://127.0.0.1:PORT/v1.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

SERVED_NAME = "smollm2-135m"
STARTUP_TIMEOUT_S = float(os.environ.get("RANKBRIDGE_VLLM_STARTUP_TIMEOUT", "420"))


@dataclass
class VLLMServer:
    base_url: str
    model: str  # the served model name
    model_dir: Path  # the safetensors folder (its tokenizer counts tokens exactly)
    python: Path
    log_path: Path
    startup_s: float
    context_length: int = 4096


def vllm_python() -> Path:
    """The vLLM environment's python: $RANKBRIDGE_VLLM_PYTHON, else the one .ci/setup_vllm made."""
    explicit = os.environ.get("RANKBRIDGE_VLLM_PYTHON")
    if explicit:
        return Path(explicit)
    cache = Path(os.environ.get("RANKBRIDGE_CACHE_DIR") or Path.home() / ".cache" / "rankbridge")
    return cache / "vllm-venv" / "current" / "bin" / "python"


def _unavailable(reason: str):
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason} (CI runs .ci/setup_vllm first; it must have failed)", pytrace=False)
    pytest.skip(f"{reason}; run `bash .ci/setup_vllm` to enable the real-vLLM tests")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _healthy(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def server_command(python: Path, model_dir: Path, port: int, context_length: int) -> list[str]:
    """Flags for a 135M model on a small CPU: float32 (no bf16 kernels on AVX2-only CPUs),
    eager mode (no torch.compile at start-up), a 4k context, 26 top-logprobs for letter labels."""
    return [
        str(python), "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(model_dir),
        "--served-model-name", SERVED_NAME,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--dtype", "float32",
        "--max-model-len", str(context_length),
        "--enforce-eager",
        "--max-num-seqs", "8",
        "--max-logprobs", "26",
        "--disable-uvicorn-access-log",
    ]


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory) -> VLLMServer:
    python = vllm_python()
    try:
        from rankbridge.rerankers.gguf import ensure_safetensors

        model_dir = ensure_safetensors()
    except Exception as exc:  # the weights package is missing or unreadable
        _unavailable(f"no SmolLM2 safetensors folder: {type(exc).__name__}: {exc}")
    running = os.environ.get("RANKBRIDGE_VLLM_URL")
    if running:
        if not _healthy(running.rstrip("/").removesuffix("/v1") + "/health"):
            pytest.fail(f"RANKBRIDGE_VLLM_URL={running} is set but the server there is not healthy", pytrace=False)
        yield VLLMServer(running.rstrip("/"), SERVED_NAME, model_dir, python, Path("(external)"), 0.0)
        return
    if not python.is_file():
        _unavailable(f"no vLLM environment at {python}")
    port = _free_port()
    context_length = 4096
    log_path = tmp_path_factory.mktemp("vllm") / "server.log"
    env = {
        **os.environ,
        "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),  # GiB; 23k tokens is plenty
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "VLLM_LOGGING_LEVEL": "WARNING",
    }
    env.pop("PYTHONPATH", None)
    started = time.monotonic()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            server_command(python, model_dir, port, context_length),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group: engine workers stop with it
        )
    base = f"http://127.0.0.1:{port}"
    try:
        while not _healthy(f"{base}/health"):
            if process.poll() is not None:
                pytest.fail(f"vLLM server exited with code {process.returncode}:\n{_tail(log_path)}", pytrace=False)
            if time.monotonic() - started > STARTUP_TIMEOUT_S:
                pytest.fail(f"vLLM server not healthy after {STARTUP_TIMEOUT_S:.0f}s:\n{_tail(log_path)}", pytrace=False)
            time.sleep(1.0)
        yield VLLMServer(
            base_url=f"{base}/v1",
            model=SERVED_NAME,
            model_dir=model_dir,
            python=python,
            log_path=log_path,
            startup_s=time.monotonic() - started,
            context_length=context_length,
        )
    finally:
        _stop(process)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    except ProcessLookupError:
        pass


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
