"""BEIR-format datasets: corpus.jsonl, queries.jsonl and qrels/<split>.tsv. Errors name the file and line.

Files are UTF-8 (a leading byte-order mark is allowed); another encoding is an error naming the
file, the line and the byte, never a raw `UnicodeDecodeError`.

Example:
    >>> from rankbridge.rerankers.core.paths import data_dir
    >>> scifact = load_beir(data_dir() / "beir" / "scifact")
    >>> len(scifact.corpus), len(scifact.qrels)
    (5183, 300)
"""

from __future__ import annotations

import codecs
import json
import logging
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rankbridge.rerankers.core.errors import RankbridgeError

logger = logging.getLogger(__name__)


class BeirFormatError(RankbridgeError, ValueError):
    """A BEIR file is missing or malformed; the message names the file and the line."""


@dataclass
class BeirDataset:
    """A BEIR dataset in memory.

    Attributes:
        corpus: document id -> {"title": str, "text": str}.
        queries: query id -> query text (every query in queries.jsonl).
        qrels: query id -> {document id: relevance grade} for the split.
        folder: where it was read from.
        split: the qrels split ("test", "dev", "train").
    """

    corpus: dict[str, dict[str, str]]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    folder: Path
    split: str = "test"

    @property
    def name(self) -> str:
        return self.folder.name

    def documents(self) -> Iterator[dict[str, Any]]:
        """Documents as `HybridRetriever.index` takes them: id, title, text."""
        for doc_id, doc in self.corpus.items():
            yield {"id": doc_id, "title": doc["title"], "text": doc["text"]}

    def eval_queries(self, sample: int | None = None, seed: int = 0) -> dict[str, str]:
        """The queries judged in the split (those with qrels), optionally a seeded random sample
        of `sample` of them, in query-id order."""
        ids = sorted(self.qrels, key=_natural_key)
        if sample is not None and sample < len(ids):
            ids = sorted(random.Random(seed).sample(ids, sample), key=_natural_key)
        return {qid: self.queries[qid] for qid in ids}


def _natural_key(text: str) -> tuple:
    return (0, int(text), "") if text.isdigit() else (1, 0, text)


def load_beir(folder: str | os.PathLike, split: str = "test") -> BeirDataset:
    """Read a BEIR folder. Raises `BeirFormatError` naming the file and line of any problem."""
    root = Path(folder)
    if not root.is_dir():
        raise BeirFormatError(f"{root}: not a folder (expected corpus.jsonl, queries.jsonl, qrels/{split}.tsv)")
    corpus: dict[str, dict[str, str]] = {}
    for path, line, record in _jsonl(root / "corpus.jsonl"):
        doc_id = _field(record, "_id", path, line)
        text = record.get("text", "")
        title = record.get("title", "") or ""
        if not isinstance(text, str) or not isinstance(title, str):
            raise BeirFormatError(f"{path}:{line}: 'text' and 'title' must be strings")
        if not text and not title:
            raise BeirFormatError(f"{path}:{line}: document {doc_id!r} has neither text nor title")
        if doc_id in corpus:
            raise BeirFormatError(f"{path}:{line}: duplicate document id {doc_id!r}")
        corpus[doc_id] = {"title": title, "text": text}
    queries: dict[str, str] = {}
    for path, line, record in _jsonl(root / "queries.jsonl"):
        qid = _field(record, "_id", path, line)
        text = _field(record, "text", path, line)
        if qid in queries:
            raise BeirFormatError(f"{path}:{line}: duplicate query id {qid!r}")
        queries[qid] = text
    qrels = _read_qrels(root / "qrels" / f"{split}.tsv", queries)
    unknown = sum(1 for judged in qrels.values() for d in judged if d not in corpus)
    if unknown:
        logger.warning("%s: %d judged documents are not in the corpus", root / "qrels" / f"{split}.tsv", unknown)
    return BeirDataset(corpus=corpus, queries=queries, qrels=qrels, folder=root, split=split)


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of a UTF-8 file; a UTF-8 byte-order mark is skipped, anything that is
    not UTF-8 raises `BeirFormatError` naming the file, line and column."""
    if not path.is_file():
        raise BeirFormatError(f"{path}: file not found")
    with open(path, "rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            if line_no == 1:
                if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
                    raise BeirFormatError(
                        f"{path}: UTF-16 text (it starts with a UTF-16 byte-order mark); BEIR files are UTF-8 "
                        f"(convert with: iconv -f UTF-16 -t UTF-8)"
                    )
                raw = raw.removeprefix(codecs.BOM_UTF8)
            if b"\x00" in raw:
                raise BeirFormatError(
                    f"{path}:{line_no}: NUL byte at column {raw.index(0) + 1} (UTF-16 or binary?); BEIR files are UTF-8 text"
                )
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise BeirFormatError(
                    f"{path}:{line_no}: not UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); BEIR files "
                    "are UTF-8 (a Latin-1 file converts with: iconv -f LATIN1 -t UTF-8)"
                ) from None
            yield line_no, text


def _jsonl(path: Path) -> Iterator[tuple[Path, int, dict[str, Any]]]:
    for line_no, raw in _lines(path):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise BeirFormatError(f"{path}:{line_no}: invalid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(record, dict):
            raise BeirFormatError(f"{path}:{line_no}: expected a JSON object, got {type(record).__name__}")
        yield path, line_no, record


def _field(record: dict[str, Any], key: str, path: Path, line: int) -> str:
    value = record.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value:
        raise BeirFormatError(f"{path}:{line}: missing or empty {key!r}")
    return value


def _read_qrels(path: Path, queries: dict[str, str]) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    conflicts: list[str] = []
    for line_no, raw in _lines(path):
        if not raw.strip():
            continue
        cols = raw.rstrip("\r\n").split("\t")
        if line_no == 1 and cols[0].strip().lower() in ("query-id", "query_id", "qid"):
            continue
        if len(cols) != 3:
            raise BeirFormatError(
                f"{path}:{line_no}: expected 3 tab-separated columns (query-id, corpus-id, score), got {len(cols)}"
            )
        qid, doc_id, grade = (c.strip() for c in cols)
        try:
            value = int(grade)
        except ValueError:
            raise BeirFormatError(f"{path}:{line_no}: score {grade!r} is not an integer") from None
        if qid not in queries:
            raise BeirFormatError(f"{path}:{line_no}: query id {qid!r} is not in queries.jsonl")
        judged = qrels.setdefault(qid, {})
        if doc_id in judged and judged[doc_id] != value:
            conflicts.append(f"line {line_no}: ({qid!r}, {doc_id!r}) graded {value}, earlier {judged[doc_id]}")
        judged[doc_id] = value
    if conflicts:
        logger.warning(
            "%s: %d duplicate judgments with a different grade; the last one is kept (first: %s)",
            path, len(conflicts), conflicts[0],
        )
    if not qrels:
        raise BeirFormatError(f"{path}: no judgments")
    return qrels


__all__ = ["BeirDataset", "BeirFormatError", "load_beir"]
