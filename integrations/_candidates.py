"""Framework items (LlamaIndex nodes, LangChain documents) -> `Candidate`, by position.

Both adapters keep the i-th item's identity by index: `RankedResult.index` points back
into the caller's list, never a lookup by text, so duplicates stay distinct.

Images: an item that carries a page image becomes `Candidate(image=...)`, with the image
passed as given (a path, bytes, a base64 string or data URL, an http(s) URL, a PIL image);
the page backends decode it. An item that names a PDF page (a ``.pdf`` path plus a page
number) becomes a candidate whose image is that page, rendered only when the backend
reads images.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rankbridge.rerankers.errors import CandidateError
from rankbridge.rerankers.types import Candidate

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
    id: Any = None,
    score: float | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Candidate:
    """One candidate for the item at `index`.

    The image is attached when the backend reads images (`wants_image`) or when the item
    has no text (then a text backend raises the `CandidateError` that names `index`). A
    `PdfPage` is rendered only for a backend that reads images.
    """
    if image is None or not (wants_image or text is None):
        image = None
    elif wants_image and isinstance(image, PdfPage):
        image = render_pdf_page(index, image)
    # else: an image-only item for a text backend keeps its image unread, so the backend's
    # check raises the CandidateError that names this index.
    return Candidate(
        text=text,
        id=id,
        metadata=dict(metadata or {}),
        image=image,
        score=_finite_or_none(score),
    )


def render_pdf_page(index: int, page: PdfPage, dpi: int = 150) -> Any:
    """Render one PDF page to a PIL image with pypdfium2 (the `vlm` extra)."""
    from rankbridge.rerankers.errors import require

    pdfium = require("pypdfium2", extra="vlm")
    if not Path(page.path).is_file():
        raise CandidateError(f"candidate {index} names PDF page {page.page} of {page.path}, which does not exist", index=index)
    try:
        pdf = pdfium.PdfDocument(page.path)
    except Exception as exc:  # pypdfium2 raises its own PdfiumError for unreadable files
        raise CandidateError(f"candidate {index}: cannot open PDF {page.path}: {exc}", index=index) from None
    try:
        if page.page >= len(pdf):
            raise CandidateError(
                f"candidate {index} names page {page.page} (0-based) of {page.path}, which has {len(pdf)} pages",
                index=index,
            )
        return pdf[page.page].render(scale=dpi / 72).to_pil()
    finally:
        pdf.close()


def _finite_or_none(score: Any) -> float | None:
    if score is None or isinstance(score, bool):
        return None
    try:
        value = float(score)
    except (TypeError, ValueError):
        return None
    return value if value == value and value not in (float("inf"), float("-inf")) else None
