"""The real vLLM CPU server for the listwise integration tests: one per test session.

`.ci/setup_vllm` creates the vLLM environment (outside the clone) and the SmolLM2-135M-Instruct
safetensors folder. The `vllm_server` fixture starts
`python -m vllm.entrypoints.openai.api_server` from that environment on 127.0.0.1 with a free port
(`rankbridge.llm_rankers.engines.vllm_process.VLLMServerProcess`), waits for /health, and stops it at the end
of the session. In CI (CI=true) a missing vLLM environment is a failure; on a developer machine
the tests are skipped with the reason.

Developers iterating on these tests may start a server once themselves with the same flags
(`VLLMServerProcess.command()`) and point the tests at it: RANKBRIDGE_VLLM_URL=http://127.0.0.1:PORT/v1.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from rankbridge.llm_rankers.engines.vllm_process import VLLMServerProcess, is_healthy, vllm_python
from rankbridge.rerankers.core.errors import BackendError

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


def _unavailable(reason: str):
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason} (CI runs .ci/setup_vllm first; it must have failed)", pytrace=False)
    pytest.skip(f"{reason}; run `bash .ci/setup_vllm` to enable the real-vLLM tests")


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    try:
        from rankbridge.rerankers.runtime.gguf import ensure_safetensors

        return ensure_safetensors()
    except Exception as exc:  # the weights package is missing or unreadable
        _unavailable(f"no SmolLM2 safetensors folder: {type(exc).__name__}: {exc}")


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory, smollm2_dir) -> VLLMServer:
    python = vllm_python()
    running = os.environ.get("RANKBRIDGE_VLLM_URL")
    if running:
        if not is_healthy(running.rstrip("/").removesuffix("/v1") + "/health"):
            pytest.fail(f"RANKBRIDGE_VLLM_URL={running} is set but the server there is not healthy", pytrace=False)
        yield VLLMServer(running.rstrip("/"), SERVED_NAME, smollm2_dir, python, Path("(external)"), 0.0)
        return
    if not python.is_file():
        _unavailable(f"no vLLM environment at {python}")
    log_path = tmp_path_factory.mktemp("vllm") / "server.log"
    process = VLLMServerProcess(smollm2_dir, SERVED_NAME, python=python, context_length=4096, log_path=log_path)
    try:
        process.start(timeout=STARTUP_TIMEOUT_S)
    except BackendError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield VLLMServer(
            base_url=process.base_url,
            model=SERVED_NAME,
            model_dir=smollm2_dir,
            python=python,
            log_path=log_path,
            startup_s=process.startup_s or 0.0,
            context_length=process.context_length,
        )
    finally:
        process.stop()
