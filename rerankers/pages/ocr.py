"""OCR of page images with RapidOCR (ONNX Runtime, weights shipped on PyPI), cached by image hash.

`PageOCR.read(images)` returns one text per page. Text is cached in memory (a bounded LRU) and
on disk (one small file per page under the cache folder), keyed by `image_hash` and by the OCR
settings, so reading the same page twice runs the OCR model once.

Example:
    >>> from PIL import Image, ImageDraw
    >>> page = Image.new("RGB", (360, 60), "white")
    >>> ImageDraw.Draw(page).text((10, 20), "Paris is the capital of France", fill="black")
    >>> ocr = PageOCR(cache_dir=None)
    >>> "Paris" in ocr.read([page])[0]  # doctest: +SKIP
    True
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rankbridge.rerankers.core.errors import require
from rankbridge.rerankers.core.paths import atomic_write_text
from rankbridge.rerankers.pages.images import image_hash, load_image

logger = logging.getLogger(__name__)

EXTRA = "vlm"


@dataclass
class OCRStats:
    """Counters since the `PageOCR` was made: how each page's text was obtained, and OCR time.
    `misses` counts the pages the OCR model ran on (a page repeated within one `read` runs once)."""

    memory_hits: int = 0
    disk_hits: int = 0
    misses: int = 0
    ocr_seconds: float = 0.0


@dataclass(eq=False)
class PageOCR:
    """RapidOCR over page images, with a memory and an on-disk text cache keyed by image hash.

    Args:
        cache_dir: folder for the on-disk cache; None keeps the cache in memory only.
        memory_cache_size: how many page texts to keep in memory (LRU).
        use_angle_cls: run RapidOCR's 180-degree text-direction classifier (slower; scanned
            pages are rarely upside down).
        text_score: drop recognized lines whose confidence is below this.
        num_threads: ONNX Runtime intra-op threads (None: ONNX Runtime's default).
        show_progress_bar: show a tqdm bar when more than one page needs OCR.
        det_limit_side_len: the text detector's cap on an image's longest side, in pixels.
        restore_spaces: put back spaces the recognizer dropped between English words.

    Example:
        >>> ocr = PageOCR(cache_dir=None, memory_cache_size=16)
        >>> ocr.stats.misses
        0
    """

    cache_dir: str | os.PathLike | None = None
    memory_cache_size: int = 4096
    use_angle_cls: bool = False
    text_score: float = 0.5
    num_threads: int | None = None
    show_progress_bar: bool = True
    det_limit_side_len: int = 1600
    restore_spaces: bool = True
    stats: OCRStats = field(default_factory=OCRStats, init=False)

    def __post_init__(self) -> None:
        self.cache_dir = Path(self.cache_dir) if self.cache_dir is not None else None
        self._memory: OrderedDict[str, str] = OrderedDict()
        self._engine: Any = None
        self._lock = threading.Lock()
        self.signature = self._signature()

    def _signature(self) -> str:
        """Names the OCR models and settings: a cache written under other settings is not reused."""
        try:
            from importlib.metadata import version

            engine_version = version("rapidocr-onnxruntime")
        except Exception:  # noqa: BLE001 - only used as a cache key
            engine_version = "unknown"
        key = json.dumps(
            {
                "engine": "rapidocr-onnxruntime",
                "version": engine_version,
                "cls": self.use_angle_cls,
                "score": self.text_score,
                "det_limit": self.det_limit_side_len,
            },
            sort_keys=True,
        )
        return hashlib.sha256(key.encode()).hexdigest()[:12]

    @property
    def engine(self) -> Any:
        """The RapidOCR engine, loaded on first use."""
        if self._engine is None:
            module = require("rapidocr_onnxruntime", extra=EXTRA, package="rapidocr-onnxruntime")
            # Det's default ("min" side 736) upscales small images several-fold; a cap on the
            # longest side keeps small crops small and full pages near their scan resolution.
            kwargs: dict[str, Any] = {
                "text_score": self.text_score,
                "print_verbose": False,
                "det_limit_type": "max",
                "det_limit_side_len": self.det_limit_side_len,
            }
            if self.num_threads is not None:
                kwargs.update(intra_op_num_threads=self.num_threads, inter_op_num_threads=1)
            # RapidOCR logs every call at INFO through its own logger; keep it to warnings.
            logging.getLogger("RapidOCR").setLevel(logging.WARNING)
            self._engine = module.RapidOCR(**kwargs)
        return self._engine

    # ------------------------------------------------------------------ cache

    def _disk_path(self, key: str) -> Path | None:
        if self.cache_dir is None:
            return None
        return self.cache_dir / self.signature / key[:2] / f"{key}.txt"

    def cached(self, key: str) -> str | None:
        """The cached text for an image hash, from memory or disk, or None."""
        with self._lock:
            text = self._memory.get(key)
            if text is not None:
                self._memory.move_to_end(key)
                self.stats.memory_hits += 1
                return text
        path = self._disk_path(key)
        if path is not None and path.is_file():
            text = path.read_text(encoding="utf-8")
            self._remember(key, text)
            with self._lock:
                self.stats.disk_hits += 1
            return text
        return None

    def _remember(self, key: str, text: str) -> None:
        with self._lock:
            self._memory[key] = text
            self._memory.move_to_end(key)
            while len(self._memory) > self.memory_cache_size:
                self._memory.popitem(last=False)

    def _store(self, key: str, text: str) -> None:
        self._remember(key, text)
        path = self._disk_path(key)
        if path is None:
            return
        try:
            atomic_write_text(path, text)  # a reader never sees half a file
        except OSError as exc:
            logger.warning("could not write the OCR cache file %s: %s", path, exc)

    def clear_memory(self) -> None:
        """Forget the in-memory texts (the on-disk cache stays)."""
        with self._lock:
            self._memory.clear()

    # ------------------------------------------------------------------ OCR

    def read(self, images: Sequence[Any], keys: Sequence[str] | None = None) -> list[str]:
        """Text of each page, in order. `keys` (image hashes) may be given when already known.

        Lines are joined with newlines in RapidOCR's reading order (top to bottom, then left to
        right); a page with no text found gives "".
        """
        if keys is None:
            keys = [image_hash(image) for image in images]
        if len(keys) != len(images):
            raise ValueError(f"read got {len(images)} images but {len(keys)} keys")
        texts: list[str | None] = [self.cached(key) for key in keys]
        todo: dict[str, list[int]] = {}
        for i, (key, text) in enumerate(zip(keys, texts)):
            if text is None:
                todo.setdefault(key, []).append(i)
        if todo:
            from tqdm.auto import tqdm

            bar = tqdm(todo.items(), total=len(todo), desc="OCR pages", unit="page", disable=not self.show_progress_bar or len(todo) < 2)
            for key, positions in bar:
                text = self.read_uncached(images[positions[0]])
                self._store(key, text)
                for i in positions:
                    texts[i] = text
        out = [t if t is not None else "" for t in texts]
        return [restore_spaces(t) for t in out] if self.restore_spaces else out

    def read_uncached(self, image: Any) -> str:
        """Run the OCR model on one page (no cache); the raw recognized lines, newline-joined."""
        import numpy as np

        pil = load_image(image)
        started = time.perf_counter()
        # RapidOCR takes OpenCV's BGR order for arrays.
        result, _ = self.engine(np.ascontiguousarray(np.asarray(pil)[:, :, ::-1]), use_cls=self.use_angle_cls)
        with self._lock:
            self.stats.misses += 1
            self.stats.ocr_seconds += time.perf_counter() - started
        if not result:
            return ""
        return "\n".join(str(line[1]) for line in result if line[1])


_MAX_SPLIT_RANK = 80_000
_MAX_SHORT_PART_RANK = 1_000  # a part of 2-3 letters must be a very common word (of, the, and)
_WORD_RUN = re.compile(r"[A-Za-z]{6,}")
_LOWER_THEN_ACRONYM = re.compile(r"\b([a-z]{2,})([A-Z]{2,}[a-z]?)\b")


def restore_spaces(text: str) -> str:
    """Put back spaces PP-OCR's recognizer dropped between English words.

    The recognizer shipped with RapidOCR is trained mostly on Chinese and often reads
    "the risk of heart" as "theriskofheart". A run of 8+ letters that is not a dictionary word
    is split (wordninja's English unigram model) when every part is one of the 80,000 most
    common words of its dictionary and has 2+ letters (or is "a"), and a part of 2-3 letters is
    one of the 1,000 most common (so "pathogenesis" does not become "pathogen es is"); other runs (gene names,
    chemical terms: "immunohistochemistry" would split into "immuno his to chemistry") are
    left as they are.

    Example:
        >>> restore_spaces("Aspirinlowerstheriskofheart attacks.")  # doctest: +SKIP
        'Aspirin lowers the risk of heart attacks.'
    """
    wordninja = require("wordninja", extra=EXTRA)
    costs = wordninja.DEFAULT_LANGUAGE_MODEL._wordcost
    # wordninja's cost of the word of rank r is log(r * log(N)).
    log_n = math.log(len(costs))
    max_cost = math.log(_MAX_SPLIT_RANK * log_n)
    max_short_cost = math.log(_MAX_SHORT_PART_RANK * log_n)

    def common(part: str) -> bool:
        cost = costs.get(part.lower(), math.inf)
        if len(part) == 1:
            return part.lower() == "a"
        return cost <= (max_short_cost if len(part) <= 3 else max_cost)

    def split(match: re.Match) -> str:
        word = match.group(0)
        if word.lower() in costs:
            return word
        parts = wordninja.split(word)
        if len(parts) < 2 or not all(common(p) for p in parts):
            return word
        return " ".join(parts)

    def acronym(match: re.Match) -> str:
        # "theICU" -> "the ICU" when the lowercase head is a common word
        head, tail = match.groups()
        return f"{head} {tail}" if common(head) else match.group(0)

    return _WORD_RUN.sub(split, _LOWER_THEN_ACRONYM.sub(acronym, text))


__all__ = ["OCRStats", "PageOCR"]
