"""Page images as rerank candidates: decoding any image form, hashing pages, rendering PDFs.

`Candidate.image` may hold a PIL image, a file path, raw bytes, a base64 string, a
``data:image/...;base64,`` URL or an http(s) URL; `load_image` turns any of these into a
`PIL.Image.Image`.
`pdf_pages` renders a PDF's pages with pypdfium2 (no system binary), lazily: a page is rendered
when a backend first asks for its pixels, and at most `max_rendered` rendered pages per document
are held in memory.

Example:
    >>> from PIL import Image
    >>> load_image(Image.new("RGB", (4, 3))).size
    (4, 3)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import logging
import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rankbridge.rerankers.core.errors import CandidateError, require
from rankbridge.rerankers.core.paths import file_hash
from rankbridge.rerankers.core.types import Candidate

if TYPE_CHECKING:
    from PIL import Image as PILImage

logger = logging.getLogger(__name__)

EXTRA = "vlm"


def _pil():
    return require("PIL.Image", extra=EXTRA, package="pillow")


class PdfPageImage:
    """A lazy reference to one rendered PDF page; `load_image` renders it on first use.

    Its `cache_key` names the source file's bytes, the page and the resolution, so caches keyed
    by `image_hash` (the OCR cache) hit without rendering the page again.
    """

    def __init__(self, document: _PdfDocument, page_index: int):
        self._document = document
        self.page_index = page_index

    @property
    def page_number(self) -> int:
        """1-based page number, as a reader counts pages."""
        return self.page_index + 1

    @property
    def source(self) -> str:
        return str(self._document.path)

    @property
    def dpi(self) -> float:
        return self._document.dpi

    @property
    def cache_key(self) -> str:
        return f"pdf:{self._document.file_hash}:{self.page_index}:{self.dpi:g}"

    def to_pil(self) -> PILImage.Image:
        """The rendered page (RGB)."""
        return self._document.render(self.page_index)

    def __repr__(self) -> str:
        return f"PdfPageImage(source={self.source!r}, page={self.page_number}, dpi={self.dpi:g})"


class _PdfDocument:
    """One open PDF with a bounded LRU of rendered pages. pdfium is not thread-safe: one lock."""

    def __init__(self, path: Path, dpi: float, max_rendered: int, password: str | None):
        pdfium = require("pypdfium2", extra=EXTRA)
        self.path = path
        self.dpi = dpi
        self.max_rendered = max_rendered
        self._lock = threading.Lock()
        self._rendered: OrderedDict[int, Any] = OrderedDict()
        self.renders = 0
        try:
            self._pdf = pdfium.PdfDocument(str(path), password=password)
        except pdfium.PdfiumError as exc:
            raise ValueError(f"cannot open PDF {path}: {exc}") from None
        self.num_pages = len(self._pdf)
        self._file_hash: str | None = None

    @property
    def file_hash(self) -> str:
        if self._file_hash is None:
            self._file_hash = file_hash(self.path, length=24)
        return self._file_hash

    def render(self, page_index: int) -> PILImage.Image:
        with self._lock:
            image = self._rendered.get(page_index)
            if image is not None:
                self._rendered.move_to_end(page_index)
                return image
            page = self._pdf[page_index]
            try:
                bitmap = page.render(scale=self.dpi / 72.0)
                image = bitmap.to_pil().convert("RGB")
            finally:
                page.close()
            self.renders += 1
            self._rendered[page_index] = image
            while len(self._rendered) > self.max_rendered:
                self._rendered.popitem(last=False)
            return image

    @property
    def rendered_in_memory(self) -> int:
        return len(self._rendered)


def pdf_pages(
    path: str | os.PathLike,
    dpi: float = 150,
    max_rendered: int = 4,
    password: str | None = None,
) -> Iterator[Candidate]:
    """Yield one page `Candidate` per PDF page, in page order, rendered lazily with pypdfium2.

    Each candidate's `image` is a `PdfPageImage` (rendered when a backend reads it), its `id`
    is ``"<file name>#p<page>"`` and its `metadata` holds ``source`` (the PDF's path),
    ``page`` (1-based) and ``dpi``. At most `max_rendered` rendered pages of the document are
    kept in memory; older ones are dropped and re-rendered if asked for again.

    Args:
        path: the PDF file.
        dpi: render resolution (72 is the PDF's own unit; 150 reads well for OCR and VLMs).
        max_rendered: how many rendered pages of this document to keep in memory.
        password: for encrypted PDFs.

    Example:
        >>> from rankbridge.rerankers import load_reranker
        >>> pages = list(pdf_pages("report.pdf"))  # doctest: +SKIP
        >>> load_reranker("ocr-page").rank("what was the revenue in 2023?", pages, top_n=3)  # doctest: +SKIP
    """
    if not dpi or dpi <= 0:
        raise ValueError(f"dpi must be a positive number, got {dpi!r}")
    if max_rendered < 1:
        raise ValueError(f"max_rendered must be at least 1, got {max_rendered!r}")
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"PDF not found: {file}")
    document = _PdfDocument(file, float(dpi), int(max_rendered), password)
    for index in range(document.num_pages):
        yield Candidate(
            id=f"{file.name}#p{index + 1}",
            image=PdfPageImage(document, index),
            metadata={"source": str(file), "page": index + 1, "dpi": float(dpi)},
        )


def load_image(image: Any) -> PILImage.Image:
    """Decode any supported image form into an RGB `PIL.Image.Image`.

    Accepts a PIL image, a path (str or `os.PathLike`), raw bytes, a base64 string, a
    ``data:image/...;base64,`` URL, an http(s) URL (fetched with httpx, `IMAGE_FETCH_TIMEOUT`
    seconds), or a lazy page from `pdf_pages`.

    Raises:
        ValueError: the value is none of these, its bytes are not a readable image, or the
            image has no pixels (a 0 x 0 or 0 x h image); the message says which form was tried.

    Example:
        >>> import base64, io
        >>> from PIL import Image
        >>> buf = io.BytesIO(); Image.new("RGB", (2, 5)).save(buf, format="PNG")
        >>> load_image(base64.b64encode(buf.getvalue()).decode()).size
        (2, 5)
    """
    pil = _load_image(image)
    width, height = pil.size
    if width < 1 or height < 1:
        raise ValueError(f"the image is {width} x {height} pixels; a page image needs at least one pixel")
    return pil


def _load_image(image: Any) -> PILImage.Image:
    Image = _pil()
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    if isinstance(image, PdfPageImage):
        return image.to_pil()
    if isinstance(image, (bytes, bytearray, memoryview)):
        return _decode_bytes(bytes(image), "raw bytes")
    if isinstance(image, os.PathLike):
        return _open_path(Path(image))
    if isinstance(image, str):
        text = image.strip()
        if text.startswith(("http://", "https://")):
            return _decode_bytes(_fetch(text), f"image at {text[:80]}")
        if text.startswith("data:"):
            header, sep, payload = text.partition(",")
            if not sep or ";base64" not in header:
                raise ValueError("a data URL image must be base64-encoded: data:image/<type>;base64,<data>")
            return _decode_bytes(_b64decode(payload, "data URL"), "data URL")
        if _is_file(text):
            return _open_path(Path(text).expanduser())
        if _looks_base64(text):
            return _decode_bytes(_b64decode(text, "base64 string"), "base64 string")
        return _open_path(Path(text[:4096]))
    raise ValueError(
        f"unsupported image type {type(image).__name__}; expected a PIL image, a path, bytes, "
        "a base64 string or a data: URL"
    )


def image_hash(image: Any) -> str:
    """A stable key for a page image: sha256 of its decoded pixels (size, mode and bytes).

    The same picture given as a PIL image, a PNG path or its bytes hashes the same. A page from
    `pdf_pages` uses its file hash, page and dpi, so it is not rendered just to be hashed.

    Example:
        >>> from PIL import Image
        >>> image_hash(Image.new("RGB", (2, 2))) == image_hash(Image.new("RGB", (2, 2)))
        True
    """
    if isinstance(image, PdfPageImage):
        return hashlib.sha256(image.cache_key.encode()).hexdigest()[:32]
    pil = load_image(image)
    digest = hashlib.sha256()
    digest.update(f"{pil.mode}:{pil.size[0]}x{pil.size[1]}:".encode())
    digest.update(pil.tobytes())
    return digest.hexdigest()[:32]


def candidate_image(index: int, candidate: Candidate) -> PILImage.Image:
    """`load_image` for a candidate, with errors that name the candidate's index."""
    try:
        return load_image(candidate.image)
    except (ValueError, OSError) as exc:
        raise CandidateError(f"candidate {index}: cannot read its image: {exc}", index=index) from None


def candidate_image_hash(index: int, candidate: Candidate) -> str:
    """`image_hash` for a candidate, with errors that name the candidate's index."""
    try:
        return image_hash(candidate.image)
    except (ValueError, OSError) as exc:
        raise CandidateError(f"candidate {index}: cannot read its image: {exc}", index=index) from None


def image_to_data_url(image: Any, format: str = "PNG", quality: int = 90) -> str:
    """Encode an image as a ``data:image/<format>;base64,`` URL (for OpenAI-style chat APIs).

    Example:
        >>> from PIL import Image
        >>> image_to_data_url(Image.new("RGB", (1, 1))).startswith("data:image/png;base64,")
        True
    """
    pil = load_image(image)
    buffer = io.BytesIO()
    fmt = format.upper()
    if fmt in ("JPG", "JPEG"):
        pil.save(buffer, format="JPEG", quality=quality)
        mime = "jpeg"
    else:
        pil.save(buffer, format=fmt)
        mime = fmt.lower()
    return f"data:image/{mime};base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def fit_pixels(image: PILImage.Image, min_pixels: int | None, max_pixels: int | None) -> PILImage.Image:
    """Scale `image` (keeping its aspect ratio) so its pixel count lies in [min_pixels, max_pixels].

    Example:
        >>> from PIL import Image
        >>> fit_pixels(Image.new("RGB", (400, 200)), None, 20_000).size
        (200, 100)
    """
    width, height = image.size
    area = width * height
    scale = 1.0
    if max_pixels is not None and area > max_pixels:
        scale = (max_pixels / area) ** 0.5
    elif min_pixels is not None and area < min_pixels:
        scale = (min_pixels / area) ** 0.5
    if scale == 1.0:
        return image
    rounding = math.ceil if scale > 1.0 else math.floor
    new_w = max(1, rounding(width * scale))
    new_h = max(1, rounding(height * scale))
    Image = _pil()
    return image.resize((new_w, new_h), Image.Resampling.BICUBIC)


_B64_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=\n\r-_")


# An image URL fetch has an overall deadline (connecting, redirects and every byte of the body),
# not a per-read timeout: a server that trickles one byte at a time cannot hold a rank open.
IMAGE_FETCH_TIMEOUT = 30.0
# The longest any single network read may wait (so the deadline is checked at least this often).
IMAGE_FETCH_READ_TIMEOUT = 5.0
IMAGE_FETCH_MAX_BYTES = 64 << 20


def _fetch(url: str) -> bytes:
    """The body at `url`, within `IMAGE_FETCH_TIMEOUT` seconds in all and `IMAGE_FETCH_MAX_BYTES`."""
    httpx = require("httpx", extra="vllm")
    deadline = time.monotonic() + IMAGE_FETCH_TIMEOUT
    shown = url[:120]
    step = min(IMAGE_FETCH_READ_TIMEOUT, IMAGE_FETCH_TIMEOUT)
    timeout = httpx.Timeout(step, connect=step)
    chunks: list[bytes] = []
    size = 0
    try:
        with httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as response:
            response.raise_for_status()
            for chunk in response.iter_bytes():
                chunks.append(chunk)
                size += len(chunk)
                if size > IMAGE_FETCH_MAX_BYTES:
                    raise ValueError(f"image {shown} is larger than {IMAGE_FETCH_MAX_BYTES} bytes")
                if time.monotonic() > deadline:
                    raise ValueError(
                        f"image {shown} was still loading after the {IMAGE_FETCH_TIMEOUT:g} s deadline "
                        f"({size} bytes so far)"
                    )
    except httpx.HTTPError as exc:
        raise ValueError(f"cannot fetch image {shown}: {type(exc).__name__}: {exc}") from None
    return b"".join(chunks)


def _is_file(text: str) -> bool:
    try:
        return len(text) < 4096 and Path(text).expanduser().is_file()
    except (OSError, ValueError):
        return False


def _looks_base64(text: str) -> bool:
    return len(text) >= 16 and set(text) <= _B64_CHARS


def _b64decode(payload: str, what: str) -> bytes:
    data = payload.strip()
    try:
        if "-" in data or "_" in data:
            return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
        return base64.b64decode(data + "=" * (-len(data) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"invalid base64 in {what}: {exc}") from None


def _decode_bytes(data: bytes, what: str) -> PILImage.Image:
    Image = _pil()
    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.load()
            return opened.convert("RGB")
    except (OSError, Image.UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise ValueError(f"{what} ({len(data)} bytes) is not a readable image: {exc}") from None


def _open_path(path: Path) -> PILImage.Image:
    if not path.is_file():
        shown = str(path)
        shown = shown if len(shown) <= 120 else shown[:117] + "..."
        raise ValueError(f"image file not found: {shown}")
    Image = _pil()
    try:
        with Image.open(path) as opened:
            opened.load()
            return opened.convert("RGB")
    except (OSError, Image.UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise ValueError(f"{path} is not a readable image: {exc}") from None


__all__ = [
    "PdfPageImage",
    "candidate_image",
    "candidate_image_hash",
    "fit_pixels",
    "image_hash",
    "image_to_data_url",
    "load_image",
    "pdf_pages",
]
