"""Turn an LLM's ranking answer into a permutation. Never raises; records what it repaired.

A listwise prompt shows passages labelled `[1]..[n]` (or `[A]..` for single-token labels) and asks
for an answer like `[3] > [1] > [2]`. Models answer in many shapes: `3 > 1 > 2`, bare numbers,
prose around the answer, `<think>` blocks, fullwidth or other unicode digits, duplicates,
labels that do not exist, and labels left out. `parse_permutation` always returns a permutation
of `range(n)` (0-based positions in the window) and says what it had to fix, so the scheduler
can count repairs and leave a window unchanged when nothing usable came back.

Example:
    >>> from rankbridge.llm_rankers import parse_permutation
    >>> parsed = parse_permutation("Sure! [3] > [1] > [3] > [9]", 4)
    >>> parsed.order
    [2, 0, 1, 3]
    >>> parsed.duplicates, parsed.out_of_range, parsed.missing
    ([2], [9], [1, 3])
"""

from __future__ import annotations

import re
import string
import unicodedata
from dataclasses import dataclass, field
from typing import Literal

Labels = Literal["numeric", "alpha"]

# Single-character labels for `alpha`: A..Z. Each is one token in common BPE vocabularies
# (SmolLM2's included, where numbers above 9 are two tokens), which single-token (FIRST-style)
# ranking relies on.
ALPHA_LABELS = string.ascii_uppercase

_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.IGNORECASE | re.DOTALL)
_THINK_OPEN = re.compile(r"<think>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</think>", re.IGNORECASE)
_SEPARATOR = r"\s*(?:>|≻|›|»|→|->)\s*"
_NUMERIC_ID = r"\[?\s*(\d+)\s*\]?"
_ALPHA_ID = r"\[?\s*(?<![A-Za-z])([A-Z])(?![A-Za-z])\s*\]?"


@dataclass
class ParsedPermutation:
    """What `parse_permutation` made of one answer.

    Attributes:
        order: 0-based window positions, best first; always a permutation of `range(n)`.
        n: the window size asked for.
        found: the valid 0-based ids read from the answer, first occurrence kept, in answer order.
        duplicates: 0-based ids the answer repeated (dropped after their first occurrence).
        out_of_range: labels the answer used that do not exist in the window, as written
            (1-based numbers, or letters).
        missing: 0-based ids the answer left out, appended in their previous order.
        think_removed: a `<think>` block was removed before parsing.
        strategy: how ids were read: `chain` (`a > b > c`), `brackets` (`[a] ... [b]`), `tokens`
            (any number / standalone label in the text), `logprobs` (first-token
            log-probabilities, `order_from_logprobs`), or `none`.
    """

    order: list[int]
    n: int
    found: list[int] = field(default_factory=list)
    duplicates: list[int] = field(default_factory=list)
    out_of_range: list[str | int] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)
    think_removed: bool = False
    strategy: str = "none"

    @property
    def usable(self) -> bool:
        """False when the answer named no valid id (the window is then left unchanged)."""
        return bool(self.found) or self.n <= 1

    @property
    def repaired(self) -> bool:
        """True when anything had to be fixed: duplicates, unknown labels, missing ids, or an
        answer that was not a clean `a > b > ...` chain."""
        return bool(self.duplicates or self.out_of_range or self.missing) or (
            self.n > 1 and self.strategy not in ("chain", "logprobs")
        )

    def repairs(self) -> dict[str, int]:
        """Counts of each kind of repair, for logs and cost accounting."""
        return {
            "duplicates": len(self.duplicates),
            "out_of_range": len(self.out_of_range),
            "missing": len(self.missing),
            "think_removed": int(self.think_removed),
            "unusable": int(not self.usable),
        }


def parse_permutation(text: object, n: int, labels: Labels = "numeric") -> ParsedPermutation:
    """Read a ranking of `n` labelled items from `text`; never raises.

    Args:
        text: the model's answer (anything; non-strings are read as empty).
        n: how many items the window holds; labels are `1..n` (numeric) or `A, B, ...` (alpha).
        labels: `numeric` for RankGPT's `[1]..[n]`, `alpha` for single-character labels.

    Returns:
        `ParsedPermutation` whose `.order` is a permutation of `range(n)` (empty for n <= 0).

    Example:
        >>> parse_permutation("<think>maybe [2]</think> B > A > C", 3, labels="alpha").order
        [1, 0, 2]
    """
    try:
        n = max(int(n), 0)
    except (TypeError, ValueError, OverflowError):
        n = 0
    if labels not in ("numeric", "alpha"):
        labels = "numeric"
    answer, think_removed = _strip_think(text if isinstance(text, str) else "")
    answer = unicodedata.normalize("NFKC", answer)
    strategy, tokens = _extract(answer, labels)

    found: list[int] = []
    seen: set[int] = set()
    duplicates: list[int] = []
    out_of_range: list[str | int] = []
    for token in tokens:
        index = _to_index(token, labels)
        if index is None or index >= n:
            out_of_range.append(_as_written(token, labels))
        elif index in seen:
            duplicates.append(index)
        else:
            seen.add(index)
            found.append(index)
    missing = [i for i in range(n) if i not in seen]
    return ParsedPermutation(
        order=found + missing,
        n=n,
        found=found,
        duplicates=duplicates,
        out_of_range=out_of_range,
        missing=missing,
        think_removed=think_removed,
        strategy=strategy if tokens else "none",
    )


def order_from_logprobs(alternatives: object, n: int, labels: Labels = "alpha") -> ParsedPermutation:
    """Order a window by the log-probabilities of its labels as the FIRST generated token.

    `alternatives` are `(token, logprob)` pairs or objects with `.token` / `.logprob` (the
    server's top log-probabilities). A token counts for a label when, stripped of spaces and
    brackets, it is that label; the best log-probability per label wins. Labels absent from the
    alternatives keep their previous order after those present. Never raises.

    Example:
        >>> order_from_logprobs([("B", -0.2), (" A", -1.5), ("The", -2.0), ("B", -3.0)], 3).order
        [1, 0, 2]
    """
    try:
        n = max(int(n), 0)
    except (TypeError, ValueError, OverflowError):
        n = 0
    best: dict[int, float] = {}
    try:
        items = list(alternatives or [])
    except TypeError:
        items = []
    for item in items:
        token, logprob = (item if isinstance(item, tuple) else (getattr(item, "token", None), getattr(item, "logprob", None)))
        if not isinstance(token, str) or not isinstance(logprob, (int, float)) or logprob != logprob:
            continue
        word = unicodedata.normalize("NFKC", token).strip().strip("[]").strip()
        index = _to_index(word, labels) if word else None
        if index is None or index >= n:  # other letters are ordinary alternatives, not errors
            continue
        if index not in best or logprob > best[index]:
            best[index] = float(logprob)
    found = sorted(best, key=lambda i: (-best[i], i))
    missing = [i for i in range(n) if i not in best]
    return ParsedPermutation(
        order=found + missing,
        n=n,
        found=found,
        missing=missing,
        strategy="logprobs" if found else "none",
    )


def label_for(position: int, labels: Labels = "numeric") -> str:
    """The label shown for 0-based window `position`: `1`, `2`, ... or `A`, `B`, ...

    Example:
        >>> label_for(0), label_for(2, "alpha")
        ('1', 'C')
    """
    if labels == "alpha":
        if not 0 <= position < len(ALPHA_LABELS):
            raise ValueError(f"alpha labels cover {len(ALPHA_LABELS)} items; position {position} has none")
        return ALPHA_LABELS[position]
    return str(position + 1)


def _strip_think(text: str) -> tuple[str, bool]:
    stripped = _THINK_BLOCK.sub(" ", text)
    removed = stripped != text
    close = list(_THINK_CLOSE.finditer(stripped))
    if close:  # a template that opened <think> in the prompt: the answer follows the last </think>
        stripped = stripped[close[-1].end():]
        removed = True
    opened = _THINK_OPEN.search(stripped)
    if opened:  # an unfinished thought: whatever follows is not an answer
        stripped = stripped[: opened.start()]
        removed = True
    return stripped, removed


def _extract(answer: str, labels: Labels) -> tuple[str, list[str]]:
    ident = _ALPHA_ID if labels == "alpha" else _NUMERIC_ID
    chain = re.compile(ident + r"(?:" + _SEPARATOR + ident + r")+")
    best: list[str] = []
    for match in chain.finditer(answer):
        ids = re.findall(ident, match.group(0))
        if len(ids) > len(best):
            best = ids
    if best:
        return "chain", best
    bracketed = re.findall(r"\[\s*(\d+)\s*\]" if labels == "numeric" else r"\[\s*([A-Z])\s*\]", answer)
    if bracketed:
        return "brackets", bracketed
    if labels == "numeric":
        return "tokens", re.findall(r"\d+", answer)
    return "tokens", re.findall(r"(?<![A-Za-z0-9])([A-Z])(?![A-Za-z0-9])", answer)


def _to_index(token: str, labels: Labels) -> int | None:
    if labels == "alpha":
        pos = ALPHA_LABELS.find(token)
        return pos if pos >= 0 else None
    try:
        value = int(token)
    except (ValueError, OverflowError):
        return None
    return value - 1 if value >= 1 else None


def _as_written(token: str, labels: Labels) -> str | int:
    if labels == "alpha":
        return token
    try:
        return int(token)
    except (ValueError, OverflowError):
        return token


__all__ = ["ALPHA_LABELS", "ParsedPermutation", "label_for", "order_from_logprobs", "parse_permutation"]
