"""Query-document token pairs for pointwise encoders: the pair template, truncation that never
cuts the query, and overlapping document windows that each fit beside the query.

Everything works on token ids, so a document is tokenized once however many windows it yields.

Example:
    >>> from transformers import AutoTokenizer
    >>> from rankbridge.rerankers.runtime.long_documents import PairTemplate, document_windows
    >>> tok = AutoTokenizer.from_pretrained("minilm-l6-ce-weak")  # doctest: +SKIP
    >>> template = PairTemplate.from_tokenizer(tok)  # doctest: +SKIP
    >>> document_windows(list(range(10)), room=4, mode="max_chunk", overlap=1)
    [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

LongDocuments = Literal["truncate", "max_chunk"]


@dataclass(frozen=True)
class PairTemplate:
    """How a tokenizer lays out a (query, document) pair, learned once from the tokenizer itself:
    ``prefix + query + middle + document + suffix`` with one token type per part. Covers BERT
    (``[CLS] q [SEP] d [SEP]``), RoBERTa / XLM-R (``<s> q </s></s> d </s>``), ELECTRA and any
    other template post-processor, without a per-family table."""

    prefix: tuple[int, ...]
    middle: tuple[int, ...]
    suffix: tuple[int, ...]
    prefix_type: int
    query_type: int
    middle_type: int
    document_type: int
    suffix_type: int

    @property
    def num_special(self) -> int:
        return len(self.prefix) + len(self.middle) + len(self.suffix)

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> PairTemplate:
        """Encode a known pair with and without special tokens and read off where they go."""
        first = tokenizer("first", add_special_tokens=False)["input_ids"]
        second = tokenizer("second", add_special_tokens=False)["input_ids"]
        encoded = tokenizer("first", "second", return_token_type_ids=True)
        ids = list(encoded["input_ids"])
        types = list(encoded.get("token_type_ids") or [0] * len(ids))
        i = _find(ids, first, 0)
        j = _find(ids, second, i + len(first)) if i >= 0 else -1
        if i < 0 or j < 0:
            raise ValueError(
                f"cannot learn the pair layout of tokenizer {type(tokenizer).__name__}: "
                "its pair encoding does not contain the two texts' own tokens"
            )
        k = j + len(second)

        def type_at(pos: int, default: int) -> int:
            return types[pos] if 0 <= pos < len(types) else default

        return cls(
            prefix=tuple(ids[:i]),
            middle=tuple(ids[i + len(first) : j]),
            suffix=tuple(ids[k:]),
            prefix_type=type_at(0, 0),
            query_type=type_at(i, 0),
            middle_type=type_at(i + len(first), type_at(i, 0)),
            document_type=type_at(j, 0),
            suffix_type=type_at(k, type_at(j, 0)),
        )

    def build(self, query: Sequence[int], document: Sequence[int]) -> tuple[list[int], list[int]]:
        """Input ids and token type ids of one pair."""
        ids = [*self.prefix, *query, *self.middle, *document, *self.suffix]
        types = (
            [self.prefix_type] * len(self.prefix)
            + [self.query_type] * len(query)
            + [self.middle_type] * len(self.middle)
            + [self.document_type] * len(document)
            + [self.suffix_type] * len(self.suffix)
        )
        return ids, types

    def document_room(self, query_length: int, max_length: int) -> int:
        """How many document tokens fit beside a query of `query_length` tokens.

        Raises:
            ValueError: the query alone (with special tokens) leaves no room for a document.
                The query is never truncated, so this is the caller's to fix.
        """
        room = max_length - self.num_special - query_length
        if room < 1:
            raise ValueError(
                f"the query has {query_length} tokens, which with {self.num_special} special tokens leaves no "
                f"room for a document within max_length={max_length}; shorten the query or raise max_length"
            )
        return room


def document_windows(document: Sequence[int], room: int, mode: LongDocuments, overlap: int) -> list[list[int]]:
    """Split a document's token ids into the windows that will be scored beside the query.

    `truncate` keeps the first `room` tokens (one window). `max_chunk` covers the whole document
    with windows of `room` tokens that overlap by `overlap` tokens (clipped to half a window so
    the windows always advance); the last window ends at the document's end.
    """
    doc = list(document)
    if len(doc) <= room:
        return [doc]
    if mode == "truncate":
        return [doc[:room]]
    step = max(room - min(overlap, room // 2), 1)
    windows = []
    start = 0
    while True:
        windows.append(doc[start : start + room])
        if start + room >= len(doc):
            return windows
        start += step


def _find(haystack: list[int], needle: list[int], start: int) -> int:
    n = len(needle)
    for pos in range(start, len(haystack) - n + 1):
        if haystack[pos : pos + n] == needle:
            return pos
    return -1
