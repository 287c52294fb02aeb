"""The distribution: the wheel carries every subpackage, the README's config table is current."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAPPED = {"rerankers": "rankbridge.rerankers", "llm_rankers": "rankbridge.llm_rankers", "integrations": "rankbridge.integrations"}


def source_packages() -> set[str]:
    found = set()
    for folder, dotted in MAPPED.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([dotted, *rel.parts]) if rel.parts else dotted)
    return found


def test_pyproject_lists_every_source_package():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert set(pyproject["tool"]["setuptools"]["packages"]) == source_packages()


@pytest.mark.slow
def test_wheel_imports_every_subpackage(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("rankbridge-*.whl"))
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(unpacked)
        names = zf.namelist()
    assert any(n.startswith("rankbridge/llm_rankers/listwise/templates/") for n in names) or not (ROOT / "llm_rankers" / "listwise" / "templates").exists()
    packages = sorted(source_packages())
    # Import from the unpacked wheel only: drop the editable install's finder first.
    code = (
        "import sys\n"
        "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f).lower()]\n"
        f"sys.path.insert(0, {str(unpacked)!r})\n"
        "import importlib\n"
        f"for name in {packages!r}:\n"
        "    mod = importlib.import_module(name)\n"
        f"    assert mod.__file__.startswith({str(unpacked)!r}), (name, mod.__file__)\n"
        "print('ok', len(sys.modules))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok")


def test_importing_the_core_stays_light():
    code = "import sys, rankbridge.rerankers; heavy = [m for m in ('torch', 'transformers', 'qdrant_client', 'llama_index', 'langchain_core', 'onnxruntime', 'vllm', 'httpx') if m in sys.modules]; print(heavy)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_readme_config_table_is_current():
    from rankbridge.rerankers.core.config_table import main

    assert main(["--check", str(ROOT / "README.md")]) == 0


def test_config_table_ignores_backends_registered_at_run_time(monkeypatch):
    # A test's fake (or a plugin) registered in this process must not change the README's table:
    # the serve tests' fakes once made this check fail only when the whole suite ran.
    from typing import Literal

    from pydantic import Field

    from rankbridge.rerankers import Reranker, RerankerConfig, register_backend
    from rankbridge.rerankers.core import registry
    from rankbridge.rerankers.core.config_table import config_table

    before = config_table()

    class LeakConfig(RerankerConfig):
        backend: Literal["table-leak"] = "table-leak"
        knob: int = Field(1, description="A field only this run-time backend has.")

    class Leak(Reranker):
        name = "table-leak"
        config_class = LeakConfig

        def _score_batch(self, queries, candidate_lists):  # pragma: no cover - never scored
            raise AssertionError

    monkeypatch.setattr(registry, "_REGISTRY", {**registry._REGISTRY})
    register_backend("table-leak", Leak, overwrite=True)
    assert "table-leak" in registry.available_backends()
    assert config_table() == before
