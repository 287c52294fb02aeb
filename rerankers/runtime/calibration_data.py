"""Calibration pairs for static int8 quantization, read from data the user gives.

Static quantization fixes each activation's int8 range once, from the activations seen on sample
inputs, so the sample should look like what will be scored: real queries beside real documents.
Two formats:

- a JSONL file, one object per line: `{"query": ..., "document": ...}` (or `"text"`), or
  `{"query": ..., "documents": [...]}` for one query with several documents;
- a BEIR folder (`corpus.jsonl`, `queries.jsonl`, `qrels/<split>.tsv`): queries in qrels order
  (split `train`, else `dev`, else `test`), each beside its judged documents and then documents
  drawn from the corpus with a fixed seed (relevance does not matter for activation ranges; a
  reranker mostly sees non-relevant candidates).

Pairs are read in file order up to `max_pairs`, so the same data always calibrates alike and the
quantized file's cache key stays the same.

Example:
    >>> import json, tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "pairs.jsonl"
    >>> _ = path.write_text(json.dumps({"query": "q", "documents": ["a", "b"]}) + "\\n")
    >>> read_calibration_pairs(path)
    [('q', 'a'), ('q', 'b')]
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

from rankbridge.rerankers.core.errors import ConfigError

_SPLITS = ("train", "dev", "test")


def read_calibration_pairs(
    source: str | os.PathLike, max_pairs: int = 256, documents_per_query: int = 16, seed: int = 0
) -> list[tuple[str, str]]:
    """(query, document) pairs for calibration from a JSONL file or a BEIR folder.

    Raises:
        ConfigError: the path does not exist, is neither format, or yields no pair (the message
            names the field `calibration` and what was wrong).
    """
    path = Path(source).expanduser()
    if path.is_dir():
        pairs = _beir_pairs(path, max_pairs, documents_per_query, seed)
    elif path.is_file():
        pairs = _jsonl_pairs(path, max_pairs)
    else:
        raise ConfigError(f"field 'calibration': {path} does not exist (give a JSONL file of pairs or a BEIR folder)")
    if not pairs:
        raise ConfigError(f"field 'calibration': {path} holds no (query, document) pair")
    return pairs


def _jsonl_pairs(path: Path, max_pairs: int) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                raise ConfigError(f"field 'calibration': line {number} of {path} is not JSON") from None
            query = row.get("query") if isinstance(row, dict) else None
            docs = row.get("documents") if isinstance(row, dict) else None
            if docs is None and isinstance(row, dict):
                doc = row.get("document", row.get("text"))
                docs = None if doc is None else [doc]
            if not isinstance(query, str) or not isinstance(docs, list) or not all(isinstance(d, str) for d in docs):
                raise ConfigError(
                    f"field 'calibration': line {number} of {path} needs a string 'query' and a string "
                    "'document' (or 'text'), or a list of strings 'documents'"
                )
            for doc in docs:
                pairs.append((query, doc))
                if len(pairs) >= max_pairs:
                    return pairs
    return pairs


def _beir_pairs(folder: Path, max_pairs: int, per_query: int, seed: int) -> list[tuple[str, str]]:
    corpus_file, queries_file = folder / "corpus.jsonl", folder / "queries.jsonl"
    if not corpus_file.is_file() or not queries_file.is_file():
        raise ConfigError(
            f"field 'calibration': folder {folder} is not a BEIR folder (needs corpus.jsonl and queries.jsonl)"
        )
    corpus: dict[str, str] = {}
    with open(corpus_file, encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            corpus[str(row["_id"])] = f"{row.get('title', '')} {row.get('text', '')}".strip()
    queries: dict[str, str] = {}
    with open(queries_file, encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            queries[str(row["_id"])] = row["text"]
    judged: dict[str, list[str]] = {}
    split = next((folder / "qrels" / f"{s}.tsv" for s in _SPLITS if (folder / "qrels" / f"{s}.tsv").is_file()), None)
    if split is not None:
        with open(split, encoding="utf-8") as handle:
            for number, line in enumerate(handle):
                parts = line.rstrip("\n").split("\t")
                if number == 0 and not parts[-1].lstrip("-").isdigit():
                    continue  # header
                if len(parts) >= 3 and parts[0] in queries and parts[1] in corpus:
                    judged.setdefault(parts[0], []).append(parts[1])
    order = list(judged) or list(queries)
    doc_ids = list(corpus)
    rng = random.Random(seed)
    pairs: list[tuple[str, str]] = []
    for qid in order:
        chosen = judged.get(qid, [])[:per_query]
        while len(chosen) < per_query and len(chosen) < len(doc_ids):
            candidate = doc_ids[rng.randrange(len(doc_ids))]
            if candidate not in chosen:
                chosen.append(candidate)
        for did in chosen:
            pairs.append((queries[qid], corpus[did]))
            if len(pairs) >= max_pairs:
                return pairs
    return pairs


__all__ = ["read_calibration_pairs"]
