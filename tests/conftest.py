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
    return path


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = Path(os.environ.get("RANKBRIDGE_DATA_DIR", SHARED / "data"))
    if not path.is_dir():
        pytest.fail(f"data directory {path} is missing; set RANKBRIDGE_DATA_DIR")
    return path


@pytest.fixture(scope="session")
def scifact_dir(data_dir) -> Path:
    return data_dir / "beir" / "scifact"
