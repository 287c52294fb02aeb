"""Issue 17, the CLI's error paths, each run as a real subprocess (`python -m
rankbridge.integrations.cli.main`): a non-zero exit, exactly one line on stderr, no traceback.

Every one of these printed a 100-line traceback, exited 0, or failed only after the whole
evaluation had run, before the fix.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from support.beir_files import write_beir

pytestmark = pytest.mark.slow  # subprocesses


def rankbridge(*argv, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "default"}  # a warning on stderr would show, too
    return subprocess.run(
        [sys.executable, "-m", "rankbridge.integrations.cli.main", *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, *expected: str) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1, proc.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def beir(tmp_path) -> Path:
    return write_beir(tmp_path / "beir")


# ---------------------------------------------------------------------- 7. silent acceptance


@pytest.mark.parametrize("flag", ["--depth", "--limit"])
@pytest.mark.parametrize("value", ["0", "-3", "two"])
def test_search_with_a_count_below_one_is_an_error(tmp_path, flag, value):
    # `search --depth 0` exited 0 and printed nothing
    proc = rankbridge("search", "q", "--store", tmp_path / "store", flag, value)
    assert_one_line_error(proc, f"argument {flag}", "positive integer")
    assert proc.returncode == 2


@pytest.mark.parametrize("flag", ["--depth", "--limit", "--queries"])
def test_eval_with_a_count_below_one_is_an_error(beir, tmp_path, flag):
    assert_one_line_error(rankbridge("eval", "--beir", beir, "--store", tmp_path / "s", flag, "0"), flag)


def test_an_unknown_command_is_one_line():
    assert_one_line_error(rankbridge("nosuch"), "invalid choice")


# ---------------------------------------------------------------------- 5. path escape


@pytest.mark.parametrize("command", ["index", "search"])
def test_a_collection_that_escapes_its_folder_is_an_error(beir, tmp_path, command):
    store = tmp_path / "deep" / "store"
    args = ["--beir", beir] if command == "index" else ["q"]
    proc = rankbridge(command, *args, "--store", store, "--collection", "../../x")
    assert_one_line_error(proc, "collection_name '../../x' is not a plain name")
    assert not (tmp_path / "x").exists() and not (tmp_path / "deep" / "x").exists()


# ---------------------------------------------------------------------- 8. deep tracebacks


def test_index_with_a_store_that_is_a_file(beir, tmp_path):
    store = tmp_path / "store.txt"
    store.write_text("a file")
    assert_one_line_error(rankbridge("index", "--beir", beir, "--store", store), "not a folder")
    assert store.read_text() == "a file"


@pytest.mark.parametrize("flag", ["--json", "--plot"])
def test_eval_checks_its_output_paths_before_the_evaluation_runs(beir, tmp_path, flag):
    # --json <folder> failed only after the whole evaluation had run
    store = tmp_path / "store"
    folder = tmp_path / "out"
    folder.mkdir()
    assert_one_line_error(rankbridge("eval", "--beir", beir, "--store", store, flag, folder), f"{flag} {folder} is a folder")
    assert not store.exists()  # nothing was indexed
    missing = tmp_path / "no" / "such" / "metrics.json"
    assert_one_line_error(rankbridge("eval", "--beir", beir, "--store", store, flag, missing), "does not exist")
    assert not store.exists()


def test_eval_checks_every_reranker_spec_before_the_evaluation_runs(beir, tmp_path):
    store = tmp_path / "store"
    proc = rankbridge("eval", "--beir", beir, "--store", store, "--reranker", "lexical", "--reranker", '{"backend": "lexical", "k1": "x"}')
    assert_one_line_error(proc, "field 'k1' of backend 'lexical'")
    assert not store.exists()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_search_at_a_closed_port():
    url = f"http://127.0.0.1:{_closed_port()}"
    assert_one_line_error(rankbridge("search", "q", "--url", url, "--timeout", "1"), f"Qdrant server {url}", "connecting failed")


def test_search_at_a_silent_port():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        assert_one_line_error(rankbridge("search", "q", "--url", url, "--timeout", "1"), f"Qdrant server {url}", "timed out")


@pytest.mark.parametrize("encoding", ["latin-1", "utf-16"])
def test_index_a_beir_file_in_another_encoding(beir, tmp_path, encoding):
    corpus = beir / "corpus.jsonl"
    corpus.write_bytes(corpus.read_text().replace("Bananas", "Bananés").encode(encoding))
    line = assert_one_line_error(rankbridge("index", "--beir", beir, "--store", tmp_path / "store"), "corpus.jsonl")
    assert "UTF" in line


def test_a_bom_before_the_qrels_header(beir, tmp_path):
    qrels = beir / "qrels" / "test.tsv"
    qrels.write_bytes(b"\xef\xbb\xbf" + qrels.read_bytes())
    # it failed with "score 'score' is not an integer"; now the dataset loads and the next check
    # (after load_beir in `index`) is the one that fails
    proc = rankbridge("index", "--beir", beir, "--store", tmp_path / "store", "--collection", "../x")
    assert_one_line_error(proc, "collection_name '../x'")


# ---------------------------------------------------------------------- 12. inline specs on the command line


def test_eval_takes_an_inline_json_reranker_spec(beir, tmp_path):
    # failed with: unknown backend '{"backend"'
    spec = json.dumps({"backend": "lexical", "fuse_first_stage": 0.5})
    out = tmp_path / "metrics.json"
    proc = rankbridge("eval", "--beir", beir, "--store", tmp_path / "store", "--reranker", spec, "--json", out, "--depth", "3", "--limit", "3", timeout=600)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert len(json.dumps(report)) > 0 and "lexical" in json.dumps(report)


def test_a_bad_inline_spec_says_how_it_was_read(tmp_path):
    proc = rankbridge("search", "q", "--store", tmp_path / "store", "--reranker", '{"backend": "lexical",')
    assert_one_line_error(proc, "was read as an inline mapping")
    assert not (tmp_path / "store").exists()


def test_train_refuses_early_stopping_with_the_last_checkpoint_before_loading_anything(beir, tmp_path):
    # early stopping keeps the best checkpoint, --checkpoint-choice last the final model: both cannot hold
    proc = rankbridge("train", "--beir", beir, "--base", "minilm-l6-ce-weak", "--out", tmp_path / "out",
                      "--validation-queries", "1", "--early-stopping", "1", "--checkpoint-choice", "last")
    assert_one_line_error(proc, "--early-stopping", "--checkpoint-choice last", "choose one")
    assert not (tmp_path / "out").exists()
