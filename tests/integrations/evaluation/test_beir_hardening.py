"""Issue 17, BEIR files from the wild: other encodings, byte-order marks, conflicting judgments.

Every problem is a `BeirFormatError` naming the file and the line, never a raw `UnicodeDecodeError`.
"""

from __future__ import annotations

import json
import logging

import pytest

from rankbridge.integrations.evaluation.beir import BeirFormatError, load_beir
from support.beir_files import write_beir

DOCS = [{"_id": "d1", "title": "Café", "text": "Crème brûlée."}, {"_id": "d2", "title": "", "text": "Plain."}]


def corpus_text() -> str:
    return "\n".join(json.dumps(d, ensure_ascii=False) for d in DOCS) + "\n"


def test_a_latin1_corpus_names_the_file_line_and_byte(tmp_path):
    folder = write_beir(tmp_path / "beir")
    (folder / "corpus.jsonl").write_bytes(corpus_text().encode("latin-1"))
    with pytest.raises(BeirFormatError, match=r"corpus\.jsonl:1: not UTF-8 \(byte 0xe9 at column \d+\)"):
        load_beir(folder)


def test_a_utf16_queries_file_is_named_as_utf16(tmp_path):
    folder = write_beir(tmp_path / "beir")
    text = (folder / "queries.jsonl").read_text()
    (folder / "queries.jsonl").write_bytes(text.encode("utf-16"))  # with its byte-order mark
    with pytest.raises(BeirFormatError, match=r"queries\.jsonl: UTF-16 text"):
        load_beir(folder)


def test_utf16_without_a_byte_order_mark_is_named_too(tmp_path):
    folder = write_beir(tmp_path / "beir")
    text = (folder / "qrels" / "test.tsv").read_text()
    (folder / "qrels" / "test.tsv").write_bytes(text.encode("utf-16-le"))
    with pytest.raises(BeirFormatError, match=r"test\.tsv:1: NUL byte"):
        load_beir(folder)


def test_a_byte_order_mark_before_the_qrels_header_is_skipped(tmp_path):
    # it was reported as "score 'score' is not an integer"
    folder = write_beir(tmp_path / "beir", qrels="\ufeffquery-id\tcorpus-id\tscore\nq1\td1\t1\n")
    (folder / "qrels" / "test.tsv").write_bytes("\ufeffquery-id\tcorpus-id\tscore\nq1\td1\t1\n".encode("utf-8"))
    assert load_beir(folder).qrels == {"q1": {"d1": 1}}


def test_a_byte_order_mark_before_the_first_json_line_is_skipped(tmp_path):
    folder = write_beir(tmp_path / "beir")
    (folder / "corpus.jsonl").write_bytes(b"\xef\xbb\xbf" + corpus_text().replace("d2", "d3").encode("utf-8"))
    dataset = load_beir(folder)
    assert dataset.corpus["d1"]["title"] == "Café"


def test_conflicting_duplicate_judgments_warn_and_keep_the_last(tmp_path, caplog):
    folder = write_beir(tmp_path / "beir", qrels="query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td1\t0\nq2\td3\t2\nq2\td3\t2\n")
    with caplog.at_level(logging.WARNING, logger="rankbridge.integrations.evaluation.beir"):
        dataset = load_beir(folder)
    assert dataset.qrels["q1"] == {"d1": 0}
    warnings = [r.getMessage() for r in caplog.records if "different grade" in r.getMessage()]
    assert len(warnings) == 1
    assert "1 duplicate judgments" in warnings[0] and "line 3" in warnings[0] and "'q1', 'd1'" in warnings[0]


def test_identical_duplicate_judgments_do_not_warn(tmp_path, caplog):
    folder = write_beir(tmp_path / "beir", qrels="q1\td1\t1\nq1\td1\t1\n")
    with caplog.at_level(logging.WARNING, logger="rankbridge.integrations.evaluation.beir"):
        load_beir(folder)
    assert not [r for r in caplog.records if "different grade" in r.getMessage()]
