"""`ocr-page`: OCR each page image, then let any text reranker from the registry score the text.

This is the CPU path for scanned pages: RapidOCR (ONNX Runtime, weights on PyPI) reads each page,
the text is cached by page-image hash (memory and disk), and the `inner` reranker (``lexical``,
``cross-encoder:minilm-l6-ce-weak``, any registry spec) ranks the recognized text. The inner
reranker's raw scores and relevance are passed through unchanged.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from rankbridge.rerankers.core.base import Reranker, Scores
from rankbridge.rerankers.core.config import RerankerConfig
from rankbridge.rerankers.core.errors import ConfigError
from rankbridge.rerankers.core.loader import parse_spec_string
from rankbridge.rerankers.core.paths import cache_dir
from rankbridge.rerankers.pages.images import candidate_image_hash
from rankbridge.rerankers.core.types import Candidate

logger = logging.getLogger(__name__)


class OCRPageConfig(RerankerConfig):
    backend: Literal["ocr-page"] = "ocr-page"
    inner: str | dict[str, Any] = Field(
        "lexical",
        description="The text reranker that scores the OCR text: any `load_reranker` spec, e.g. "
        "`lexical`, `cross-encoder:minilm-l6-ce-weak`, or a mapping with its own `backend:`.",
    )
    cache_dir: str | None = Field(
        None,
        description="Folder of the on-disk OCR text cache (keyed by page-image hash and OCR settings); "
        "default `$RANKBRIDGE_CACHE_DIR/ocr`. Set `disk_cache: false` to keep it in memory only.",
    )
    disk_cache: bool = Field(True, description="Keep OCR text on disk so later processes reuse it.")
    memory_cache_size: int = Field(4096, ge=0, description="How many page texts the in-memory LRU cache keeps.")
    use_angle_cls: bool = Field(
        False, description="Run RapidOCR's 180-degree text-direction classifier (slower; for upside-down scans)."
    )
    text_score: float = Field(0.5, ge=0.0, le=1.0, description="Drop OCR lines recognized with lower confidence.")
    restore_spaces: bool = Field(
        True,
        description="Put back spaces the OCR recognizer dropped between English words (\"theriskof\" -> "
        "\"the risk of\"; wordninja's unigram model, common words only). Applied when text is read, so "
        "the cache holds the raw OCR text.",
    )
    num_threads: int | None = Field(
        None, ge=1, description="ONNX Runtime threads for OCR; default: ONNX Runtime's choice."
    )
    include_candidate_text: bool = Field(
        False,
        description="Append a candidate's own `text` (a caption, a title) after its OCR text before scoring.",
    )
    show_progress_bar: bool = Field(True, description="Show a tqdm bar while pages are OCR'd (when more than one page needs OCR).")

    @field_validator("inner")
    @classmethod
    def _inner_is_not_a_page_backend(cls, value: Any) -> Any:
        spec = value if isinstance(value, dict) else parse_spec_string(str(value), origin="ocr-page inner")
        backend = spec.get("backend")
        if backend in {"ocr-page", "vlm-page", "vllm-page"}:
            raise ValueError(f"inner must be a text reranker, not the page backend '{backend}'")
        return value


class OCRPageReranker(Reranker):
    """Rerank page images by OCR text, scored by any text reranker.

    Every candidate must carry an `image` (PIL image, path, bytes, base64, data URL or a page
    from `pdf_pages`). The OCR text of each page is cached by image hash in memory and on disk,
    so ranking the same pages again costs only the inner reranker.

    Example:
        >>> from PIL import Image, ImageDraw
        >>> from rankbridge.rerankers import Candidate, load_reranker
        >>> def page(text):
        ...     img = Image.new("RGB", (420, 60), "white")
        ...     ImageDraw.Draw(img).text((10, 20), text, fill="black")
        ...     return Candidate(image=img)
        >>> reranker = load_reranker({"backend": "ocr-page", "inner": "lexical", "disk_cache": False})
        >>> pages = [page("Bananas are yellow"), page("Paris is the capital of France")]
        >>> reranker.rank("capital of France", pages).ids  # doctest: +SKIP
        [1, 0]
    """

    name = "ocr-page"
    config_class = OCRPageConfig
    accepts_text = False
    accepts_images = True

    def __init__(self, config: OCRPageConfig | dict[str, Any] | None = None, **kwargs: Any):
        super().__init__(config, **kwargs)
        from rankbridge.rerankers.core.loader import load_reranker
        from rankbridge.rerankers.pages.ocr import PageOCR

        cfg = self.config
        try:
            self.inner = load_reranker(cfg.inner)
        except ConfigError as exc:
            raise ConfigError(f"field 'inner' of backend 'ocr-page': {exc}") from None
        if not self.inner.accepts_text:
            raise ConfigError(
                f"field 'inner' of backend 'ocr-page': '{self.inner.config.backend}' does not score text"
            )
        folder = None
        if cfg.disk_cache:
            folder = cfg.cache_dir if cfg.cache_dir is not None else cache_dir("ocr")
        self.ocr = PageOCR(
            cache_dir=folder,
            memory_cache_size=cfg.memory_cache_size,
            use_angle_cls=cfg.use_angle_cls,
            text_score=cfg.text_score,
            num_threads=cfg.num_threads,
            show_progress_bar=cfg.show_progress_bar,
            restore_spaces=cfg.restore_spaces,
        )

    def model_fingerprint(self) -> str:
        """The inner reranker's scoring identity (its model's content hash included); the OCR
        settings are config fields of this backend. Pointwise exactly when the inner reranker is."""
        from rankbridge.rerankers.core.cache import identity_digest

        return identity_digest(self.inner.scoring_identity())

    def scores_are_pointwise(self) -> bool:
        return self.inner.scores_are_pointwise()

    def ocr_texts(self, candidates: list[Candidate]) -> list[str]:
        """The OCR text of each candidate's page, in order (from the cache where it can)."""
        return self._ocr_lists([candidates])[0]

    def _ocr_lists(self, candidate_lists: list[list[Candidate]]) -> list[list[str]]:
        # Pages shared across queries are read once; errors name the index within its list.
        keys = [candidate_image_hash(i, c) for cands in candidate_lists for i, c in enumerate(cands)]
        texts = self.ocr.read([c.image for cands in candidate_lists for c in cands], keys=keys)
        out, start = [], 0
        for cands in candidate_lists:
            out.append(texts[start : start + len(cands)])
            start += len(cands)
        return out

    def _as_text(self, candidate: Candidate, text: str) -> Candidate:
        if self.config.include_candidate_text and candidate.text:
            text = f"{text}\n{candidate.text}" if text else candidate.text
        return Candidate(text=text, id=candidate.id, metadata=candidate.metadata, score=candidate.score)

    def _score_batch(self, queries: list[str], candidate_lists: list[list[Candidate]]) -> list[Scores]:
        # OCR every page first, then let the inner reranker share its batches across queries.
        texts = self._ocr_lists(candidate_lists)
        lists = [[self._as_text(c, t) for c, t in zip(cands, ts)] for cands, ts in zip(candidate_lists, texts)]
        # Through the inner reranker's public contract: every candidate comes back, by index.
        scores: list[Scores] = []
        for ranked in self.inner.rank_many(queries, lists):
            raw = np.empty(ranked.num_candidates, dtype=np.float64)
            rel = np.empty(ranked.num_candidates, dtype=np.float64)
            for r in ranked:
                raw[r.index], rel[r.index] = r.score, r.relevance
            scores.append(Scores(scores=raw, relevance=rel))
        return scores

    def close(self) -> None:
        self.inner.close()


__all__ = ["OCRPageConfig", "OCRPageReranker"]
