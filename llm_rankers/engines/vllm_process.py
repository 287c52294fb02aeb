"""Start and stop a local vLLM OpenAI-compatible server (`python -m vllm.entrypoints.openai.api_server`)
from a separate Python environment, e.g. the one `.ci/setup_vllm` creates. Used by the tests and
`benchmarks/listwise_cost.py`; handy in notebooks too.

Example:
    >>> from rankbridge.llm_rankers.engines.vllm_process import VLLMServerProcess
    >>> with VLLMServerProcess("/path/to/SmolLM2-135M-Instruct", served_name="smollm2-135m") as server:  # doctest: +SKIP
    ...     print(server.base_url)            # http://127.0.0.1:<free port>/v1
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from rankbridge.rerankers.core.errors import BackendError

logger = logging.getLogger(__name__)

VLLM_PYTHON_ENV = "RANKBRIDGE_VLLM_PYTHON"


def vllm_python() -> Path:
    """The vLLM environment's python: `$RANKBRIDGE_VLLM_PYTHON`, else the one `.ci/setup_vllm`
    made under `$RANKBRIDGE_CACHE_DIR/vllm-venv/current` (it may not exist)."""
    explicit = os.environ.get(VLLM_PYTHON_ENV)
    if explicit:
        return Path(explicit)
    cache = Path(os.environ.get("RANKBRIDGE_CACHE_DIR") or Path.home() / ".cache" / "rankbridge")
    return cache / "vllm-venv" / "current" / "bin" / "python"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def is_healthy(url: str, timeout: float = 2.0) -> bool:
    """True when `GET url` answers 200."""
    import httpx

    try:
        return httpx.get(url, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


class VLLMServerProcess:
    """A vLLM server subprocess on 127.0.0.1 with a free port.

    The default flags suit a small model on a small CPU: float32 (CPUs without AVX-512 have no
    fast bf16 kernels), eager mode (no torch.compile at start-up), a 4k context, and up to 26
    top log-probabilities (one per letter label of first-token ranking).

    Args:
        model: the model folder (safetensors + tokenizer).
        served_name: the name clients use (`model` in requests).
        python: the vLLM environment's python (default `vllm_python()`).
        context_length: `--max-model-len`.
        extra_args: more `vllm serve` flags.
        kv_cache_gib: `VLLM_CPU_KVCACHE_SPACE` (the CPU KV cache, in GiB).
        log_path: where the server's output goes (default: a file beside nothing, discarded).
    """

    def __init__(
        self,
        model: str | os.PathLike,
        served_name: str,
        *,
        python: str | os.PathLike | None = None,
        context_length: int = 4096,
        extra_args: list[str] | None = None,
        kv_cache_gib: int = 1,
        log_path: str | os.PathLike | None = None,
        host: str = "127.0.0.1",
    ):
        self.model = Path(model)
        self.served_name = served_name
        self.python = Path(python) if python else vllm_python()
        self.context_length = context_length
        self.extra_args = list(extra_args or [])
        self.kv_cache_gib = kv_cache_gib
        self.log_path = Path(log_path) if log_path else None
        self.host = host
        self.port: int | None = None
        self.startup_s: float | None = None
        self._process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def command(self) -> list[str]:
        return [
            str(self.python), "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(self.model),
            "--served-model-name", self.served_name,
            "--host", self.host,
            "--port", str(self.port),
            "--dtype", "float32",
            "--max-model-len", str(self.context_length),
            "--enforce-eager",
            "--max-num-seqs", "8",
            "--max-logprobs", "26",
            "--disable-uvicorn-access-log",
            *self.extra_args,
        ]

    def start(self, timeout: float = 420.0) -> VLLMServerProcess:
        """Start the server and wait until `/health` answers; raise `BackendError` with the tail
        of its log if it exits or is not healthy within `timeout` seconds."""
        if not self.python.is_file():
            raise BackendError(f"no vLLM environment at {self.python}; run `bash .ci/setup_vllm`")
        self.port = free_port()
        env = {
            **os.environ,
            "VLLM_CPU_KVCACHE_SPACE": str(self.kv_cache_gib),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "VLLM_NO_USAGE_STATS": "1",
        }
        env.pop("PYTHONPATH", None)
        started = time.monotonic()
        log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL
        try:
            self._process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, env=env,
                start_new_session=True,  # its own process group: the engine workers stop with it
            )
        finally:
            if log is not subprocess.DEVNULL:
                log.close()
        logger.info("starting vLLM server for %s on port %d", self.model, self.port)
        health = f"http://{self.host}:{self.port}/health"
        while not is_healthy(health):
            if self._process.poll() is not None:
                code = self._process.returncode
                self._process = None
                raise BackendError(f"vLLM server exited with code {code} during start-up:\n{self.log_tail()}")
            if time.monotonic() - started > timeout:
                self.stop()
                raise BackendError(f"vLLM server not healthy after {timeout:.0f}s:\n{self.log_tail()}")
            time.sleep(1.0)
        self.startup_s = time.monotonic() - started
        logger.info("vLLM server healthy after %.1fs at %s", self.startup_s, self.base_url)
        return self

    def stop(self) -> None:
        """Stop the server and its engine processes (SIGTERM, then SIGKILL after 30 s)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        except ProcessLookupError:
            pass

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None:
            return "(server output was not kept; pass log_path)"
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> VLLMServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["VLLMServerProcess", "free_port", "is_healthy", "vllm_python"]
