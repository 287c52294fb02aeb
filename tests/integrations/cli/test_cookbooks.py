"""The cookbooks run as a user runs them (a subprocess each), and every config file they offer is valid."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rankbridge.integrations.adapters.lazy_reranker import LazyReranker

ROOT = Path(__file__).resolve().parents[3]
COOKBOOKS = ROOT / "cookbooks"
CONFIGS = sorted((COOKBOOKS / "configs").glob("*.yaml"))
ROW = re.compile(r"^\s+(\d+)\s+(\d+\.\d+)\s+(-?\d+\.\d+)\s+(yes)?\s+(\S+): ")


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_config_file_is_valid_for_the_backend_it_is_named_after(config):
    assert yaml.safe_load(config.read_text())["backend"] == config.stem
    lazy = LazyReranker(str(config))  # validates every field against the backend's schema, loads no model
    assert lazy.backend == config.stem and not lazy.built


def test_every_cookbook_backend_has_a_config():
    assert {"lexical", "identity", "cross-encoder", "listwise"} <= {c.stem for c in CONFIGS}


def run_cookbook(name: str) -> dict[str, list[list[tuple[int, float, float]]]]:
    """Run a cookbook; return, per config section, the printed rows of each query."""
    proc = subprocess.run(
        [sys.executable, str(COOKBOOKS / name)], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    sections: dict[str, list[list[tuple[int, float, float]]]] = {}
    for line in proc.stdout.splitlines():
        if line.startswith("=== "):
            current = sections.setdefault(line[4:].split(":")[0], [])
        elif line.startswith("query "):
            current.append([])
        elif match := ROW.match(line):
            current[-1].append((int(match[1]), float(match[2]), float(match[3])))
    return sections


def check_sections(sections) -> None:
    assert list(sections) == ["cross-encoder.yaml", "lexical.yaml"]  # one pipeline, two config files
    for queries in sections.values():
        assert len(queries) == 2
        for rows in queries:
            assert [r[0] for r in rows] == [1, 2, 3, 4, 5]
            relevance = [r[1] for r in rows]
            assert relevance == sorted(relevance, reverse=True) and all(0.0 <= r <= 1.0 for r in relevance)
    # Different backends, different orders (the swap really changed the reranker).
    ce, lex = sections["cross-encoder.yaml"], sections["lexical.yaml"]
    assert [[r[1] for r in q] for q in ce] != [[r[1] for r in q] for q in lex]


@pytest.mark.slow
def test_llama_index_cookbook_runs():
    check_sections(run_cookbook("llama_index_rerank.py"))


@pytest.mark.slow
def test_langchain_cookbook_runs():
    check_sections(run_cookbook("langchain_rerank.py"))
