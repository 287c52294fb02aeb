"""Framework items (LlamaIndex nodes, LangChain documents) -> `Candidate`, by position.

Both adapters keep the i-th item's identity by index: `RankedResult.index` points back
into the caller's list, never a lookup by text, so duplicates stay distinct.

Images: an item that carries a page image becomes `Candidate(image=...)`, with the image
passed as given (a path, bytes, a base64 string or data URL, an http(s) URL, a PIL image);
the page backends decode it. An item that names a PDF page (a ``.pdf`` path plus a page
number) becomes, for a backend that reads images, a lazy page image from
`rankbridge.rerankers.pages.images.pdf_pages` (rendered when the backend reads its pixels).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rankbridge.rerankers.core.errors import CandidateError
from rankbridge.rerankers.core.types import Candidate

logger = logging.getLogger(__name__)

# Metadata keys that hold a page image, in the order they are tried.
IMAGE_KEYS = ("image", "image_base64", "image_path", "image_url")
# Metadata keys that hold the path of the PDF an item comes from (LangChain's PDF loaders
# write `source`, PyMuPDF-based loaders and LlamaIndex readers `file_path`).
PDF_PATH_KEYS = ("file_path", "source")


@dataclass(frozen=True)
class PdfPage:
    """A page of a PDF file named by an item's metadata; `page` is 0-based."""

    path: str
    page: int


def image_from_metadata(metadata: Mapping[str, Any]) -> Any:
    """The page image an item's metadata names, or None.

    Tried in order: ``image``, ``image_base64``, ``image_path``, ``image_url`` (any value
    that is not None or empty, returned as given); then a PDF page: a ``file_path`` or
    ``source`` ending in ``.pdf`` together with ``page`` (0-based, as LangChain's PDF loaders
    write it) or ``page_number`` (1-based), returned as a `PdfPage`.

    Example:
        >>> image_from_metadata({"source": "paper.pdf", "page": 2})
        PdfPage(path='paper.pdf', page=2)
        >>> image_from_metadata({"image_path": "scan.png", "page": 1})
        'scan.png'
        >>> image_from_metadata({"source": "notes.txt"}) is None
        True
    """
    for key in IMAGE_KEYS:
        value = metadata.get(key)
        if value is not None and not (isinstance(value, (str, bytes)) and not value):
            return value
    path = next(
        (str(metadata[k]) for k in PDF_PATH_KEYS if isinstance(metadata.get(k), (str, Path))
         and str(metadata[k]).lower().endswith(".pdf")),
        None,
    )
    if path is None:
        return None
    if _is_page_number(metadata.get("page")):
        return PdfPage(path, int(metadata["page"]))
    if _is_page_number(metadata.get("page_number")) and int(metadata["page_number"]) >= 1:
        return PdfPage(path, int(metadata["page_number"]) - 1)
    return None


def _is_page_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= 0
    return isinstance(value, str) and value.isdigit()


def make_candidate(
    index: int,
    *,
    text: str | None,
    image: Any,
    wants_image: bool,
    pdfs: PdfPageSource | None = None,
    id: Any = None,
    score: float | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Candidate:
    """One candidate for the item at `index`.

    The image is attached when the backend reads images (`wants_image`) or when the item
    has no text (then a text backend raises the `CandidateError` that names `index`). A
    `PdfPage` becomes a lazy page image (rendered when the backend reads its pixels) only
    for a backend that reads images.
    """
    if image is None or not (wants_image or text is None):
        image = None
    elif wants_image and isinstance(image, PdfPage):
        image = (pdfs or PdfPageSource()).page_image(index, image)
    # else: an image-only item for a text backend keeps its image unread, so the backend's
    # check raises the CandidateError that names this index.
    return Candidate(
        text=text,
        id=id,
        metadata=dict(metadata or {}),
        image=image,
        score=_finite_or_none(score),
    )


class PdfPageSource:
    """Opens each PDF once per conversion and hands out lazy page images
    (`rankbridge.rerankers.pages.images.pdf_pages`: rendered on first read, a bounded number kept)."""

    def __init__(self, dpi: float = 150):
        self.dpi = dpi
        self._open: dict[str, list[Candidate]] = {}

    def page_image(self, index: int, page: PdfPage) -> Any:
        pages = self._open.get(page.path)
        if pages is None:
            from rankbridge.rerankers.pages.images import pdf_pages

            try:
                pages = list(pdf_pages(page.path, dpi=self.dpi))
            except (OSError, ValueError) as exc:
                raise CandidateError(f"candidate {index} names a page of {page.path}: {exc}", index=index) from None
            self._open[page.path] = pages
        if page.page >= len(pages):
            raise CandidateError(
                f"candidate {index} names page {page.page} (0-based) of {page.path}, which has {len(pages)} pages",
                index=index,
            )
        return pages[page.page].image


def _finite_or_none(score: Any) -> float | None:
    """A framework's first-stage score as a float, passed on as given when it is a number
    (a NaN or infinity then raises the core's `CandidateError` naming the item); None when it
    is not a number at all (e.g. an unrelated ``score`` metadata value)."""
    if score is None or isinstance(score, bool):
        return None
    try:
        return float(score)
    except (TypeError, ValueError, OverflowError):
        return None


def copied_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of an item's metadata for the copy an adapter returns. A value that cannot be
    deep-copied (a lock, a client, an open file) is shared with the caller's item instead of
    failing the whole rerank; the caller's metadata is never modified either way."""
    try:
        return copy.deepcopy(dict(metadata))
    except Exception:  # noqa: BLE001 - deepcopy raises TypeError, PicklingError, anything from __reduce__
        out: dict[str, Any] = {}
        for key, value in metadata.items():
            try:
                out[key] = copy.deepcopy(value)
            except Exception:  # noqa: BLE001
                logger.debug("metadata value %r (%s) cannot be deep-copied; shared", key, type(value).__name__)
                out[key] = value
        return out
