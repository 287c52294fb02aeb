"""BEIR loader: real SciFact, and malformed files named by file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rankbridge.integrations.evaluation.beir import BeirFormatError, load_beir
from support.beir_files import write_beir


def test_loads_a_tiny_folder(tmp_path):
    ds = load_beir(write_beir(tmp_path))
    assert ds.corpus["d1"] == {"title": "Vitamin D", "text": "Vitamin D reduces fractures."}
    assert ds.queries["q3"] == "unjudged"
    assert ds.qrels == {"q1": {"d1": 1}, "q2": {"d3": 2}}
    assert ds.eval_queries() == {"q1": "vitamin D fractures", "q2": "vector database"}
    assert list(ds.documents())[0] == {"id": "d1", "title": "Vitamin D", "text": "Vitamin D reduces fractures."}


def test_loads_scifact(scifact_dir):
    ds = load_beir(scifact_dir)
    assert len(ds.corpus) == 5183 and len(ds.qrels) == 300
    sample = ds.eval_queries(sample=50, seed=0)
    assert len(sample) == 50 and set(sample) <= set(ds.qrels)
    assert sample == ds.eval_queries(sample=50, seed=0)
    assert sample != ds.eval_queries(sample=50, seed=1)


@pytest.mark.parametrize(
    "files, where, what",
    [
        ({"corpus": '{"_id": "d1", "text": "a"}\n{"_id": "d2", "text": "b"\n'}, "corpus.jsonl:2", "invalid JSON"),
        ({"corpus": '{"_id": "d1", "text": "a"}\n\n{"text": "no id"}\n'}, "corpus.jsonl:3", "'_id'"),
        ({"corpus": '{"_id": "d1", "text": "a"}\n{"_id": "d1", "text": "b"}\n'}, "corpus.jsonl:2", "duplicate document id"),
        ({"corpus": '["not", "an", "object"]\n'}, "corpus.jsonl:1", "JSON object"),
        ({"corpus": '{"_id": "d1", "title": "", "text": ""}\n'}, "corpus.jsonl:1", "neither text nor title"),
        ({"queries": '{"_id": "q1"}\n'}, "queries.jsonl:1", "'text'"),
        ({"qrels": "query-id\tcorpus-id\tscore\nq1\td1\n"}, "test.tsv:2", "3 tab-separated columns"),
        ({"qrels": "q1\td1\thigh\n"}, "test.tsv:1", "not an integer"),
        ({"qrels": "q1\td1\t1\nq9\td2\t1\n"}, "test.tsv:2", "'q9' is not in queries.jsonl"),
        ({"qrels": "query-id\tcorpus-id\tscore\n"}, "test.tsv", "no judgments"),
    ],
)
def test_malformed_files_name_file_and_line(tmp_path, files, where, what):
    write_beir(tmp_path, **files)
    with pytest.raises(BeirFormatError) as info:
        load_beir(tmp_path)
    message = str(info.value)
    assert where in message and what in message, message


def test_missing_files_are_named(tmp_path):
    with pytest.raises(BeirFormatError, match="not a folder"):
        load_beir(tmp_path / "nope")
    write_beir(tmp_path)
    (tmp_path / "qrels" / "test.tsv").unlink()
    with pytest.raises(BeirFormatError, match=r"qrels/test.tsv: file not found"):
        load_beir(tmp_path)
    with pytest.raises(BeirFormatError, match=r"qrels/dev.tsv"):
        load_beir(tmp_path, split="dev")
