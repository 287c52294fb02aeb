"""A tiny BEIR folder written to disk, for loader and CLI tests."""

from __future__ import annotations

import json
from pathlib import Path


def write_beir(folder: Path, corpus=None, queries=None, qrels=None) -> Path:
    """A tiny BEIR folder; each argument replaces that file's raw text."""
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    docs = [{"_id": "d1", "title": "Vitamin D", "text": "Vitamin D reduces fractures."},
            {"_id": "d2", "title": "", "text": "Bananas are yellow."},
            {"_id": "d3", "title": "Qdrant", "text": "A vector database with hybrid search."}]
    qs = [{"_id": "q1", "text": "vitamin D fractures"}, {"_id": "q2", "text": "vector database"}, {"_id": "q3", "text": "unjudged"}]
    (folder / "corpus.jsonl").write_text(corpus if corpus is not None else "\n".join(json.dumps(d) for d in docs) + "\n")
    (folder / "queries.jsonl").write_text(queries if queries is not None else "\n".join(json.dumps(q) for q in qs) + "\n")
    (folder / "qrels" / "test.tsv").write_text(
        qrels if qrels is not None else "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td3\t2\n"
    )
    return folder
