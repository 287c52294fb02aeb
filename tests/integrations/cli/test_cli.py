"""`rankbridge` console script on a tiny BEIR folder written in tmp_path (real embedded Qdrant)."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from rankbridge.integrations.cli import main as cli  # the module
from support.beir_files import write_beir

pytestmark = pytest.mark.slow  # builds the real dense embedder


@pytest.fixture
def beir(tmp_path):
    return write_beir(tmp_path / "beir")


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_index_search_eval(beir, tmp_path, capsys):
    store = tmp_path / "store"
    code, out, _ = run(capsys, "index", "--beir", beir, "--store", store)
    assert code == 0 and "indexed 3 documents" in out
    code, out, _ = run(capsys, "index", "--beir", beir, "--store", store)
    assert code == 0 and "(3 in store)" in out  # idempotent

    code, out, _ = run(capsys, "search", "vitamin D fractures", "--store", store, "--limit", "2")
    assert code == 0 and out.splitlines()[0].split()[1] == "d1" and len(out.splitlines()) == 2
    code, out, _ = run(capsys, "search", "vector database", "--store", store, "--reranker", "lexical", "--json")
    hits = json.loads(out)
    assert hits[0]["id"] == "d3" and 0 <= hits[0]["relevance"] <= 1 and hits[0]["first_stage_score"] > 0

    report, plot = tmp_path / "eval.json", tmp_path / "eval.png"
    code, out, _ = run(
        capsys, "eval", "--beir", beir, "--store", store, "--first-stage", "hybrid", "sparse",
        "--reranker", "lexical", "--depth", "2", "--json", report, "--plot", plot,
    )
    assert code == 0, out
    data = json.loads(report.read_text())
    assert set(data["results"]) == {"hybrid", "sparse", "hybrid + lexical @2", "sparse + lexical @2"}
    assert data["results"]["hybrid"]["mrr@10"] == 1.0 and data["queries"] == 2
    assert "all 2 judged queries" in out and "rerank depth 2" in out
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_demo_prints_first_stage_vs_reranked(beir, tmp_path, capsys):
    code, out, _ = run(
        capsys, "demo", "--beir", beir, "--store", tmp_path / "store", "--reranker", "lexical", "--queries", "1", "--depth", "2"
    )
    assert code == 0, out
    assert "1 of 2 test queries" in out and "lexical reranks the top 2" in out
    lines = [line for line in out.splitlines() if line.startswith(("first stage", "reranked"))]
    assert len(lines) == 2 and all(len(line.split()) >= 4 for line in lines)


def test_errors_are_one_line_naming_file_and_line(tmp_path, capsys):
    write_beir(tmp_path, corpus='{"_id": "d1", "text": "a"}\n{broken\n')
    code, out, err = run(capsys, "index", "--beir", tmp_path, "--store", tmp_path / "store")
    assert code == 2 and "corpus.jsonl:2" in err and "Traceback" not in err
    code, out, _ = run(capsys, "search", "q", "--store", tmp_path / "empty")
    assert code == 1 and "collection is empty" in out


def test_subcommands_come_from_the_command_table():
    names = set()
    for module in cli.COMMANDS:
        assert callable(importlib.import_module(module).register)
    parser = cli.build_parser()
    for action in parser._subparsers._group_actions:
        names |= set(action.choices)
    assert {"index", "search", "eval", "demo"} <= names
    assert "backends" in names


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "rankbridge"
    assert script.exists(), "the rankbridge console script is not installed next to this interpreter"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "demo" in result.stdout


def test_backends_lists_every_backend_its_extra_and_whether_it_imports(capsys, monkeypatch):
    from rankbridge.rerankers import Reranker, register_backend
    from rankbridge.rerankers.core import registry

    monkeypatch.setitem(
        registry.BUILTIN_BACKENDS, "gone", registry.BuiltinBackend("rankbridge.rerankers.backends.not_there:Gone", "gone-extra")
    )

    class Plugged(Reranker):
        def _score_batch(self, queries, candidate_lists):  # pragma: no cover - never scored here
            raise AssertionError

    monkeypatch.setattr(registry, "_REGISTRY", {**registry._REGISTRY})  # the registration below is undone afterwards
    register_backend("plugged-in", Plugged, overwrite=True)

    code, out, _ = run(capsys, "backends")
    assert code == 0
    rows = {line.split()[0]: line.split(None, 2) for line in out.splitlines()[1:]}
    assert set(registry.BUILTIN_BACKENDS) | {"plugged-in"} <= set(rows)
    assert rows["lexical"][1:] == ["core", "yes"]
    assert rows["cross-encoder"][1] == "cross-encoder" and rows["plugged-in"][1:] == ["plugin", "yes"]
    assert rows["gone"][1] == "gone-extra" and rows["gone"][2].startswith("no: ")
    assert "rankbridge[gone-extra]" in rows["gone"][2] and "\n" not in rows["gone"][2]

    code, out, _ = run(capsys, "backends", "--json")
    data = {row["name"]: row for row in json.loads(out)}
    assert data["gone"]["imports"] is False and "not_there" in data["gone"]["reason"]
    assert data["identity"] == {"name": "identity", "extra": "core", "imports": True, "reason": ""}
