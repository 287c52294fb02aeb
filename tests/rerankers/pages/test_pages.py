"""Page candidates: image decoding in every accepted form, hashing, lazy PDF rendering with pypdfium2."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest

from rankbridge.rerankers import Candidate, CandidateError, load_reranker
from rankbridge.rerankers.pages.images import (
    PdfPageImage,
    fit_pixels,
    image_hash,
    image_to_data_url,
    load_image,
    pdf_pages,
)

Image = pytest.importorskip("PIL.Image")
pytest.importorskip("pypdfium2")

COLORS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (120, 120, 0)]
SIZES = [(200, 300), (300, 200), (150, 150), (100, 250)]


@pytest.fixture
def scanned_pdf(tmp_path):
    """A 4-page image-only PDF (what a scanner writes), each page a different colour and size."""
    pages = [Image.new("RGB", size, color) for size, color in zip(SIZES, COLORS)]
    path = tmp_path / "scan.pdf"
    pages[0].save(path, save_all=True, append_images=pages[1:], resolution=72.0)
    return path


def png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_pdf_pages_come_in_order_with_metadata(scanned_pdf):
    pages = list(pdf_pages(scanned_pdf, dpi=144))
    assert [c.metadata["page"] for c in pages] == [1, 2, 3, 4]
    assert [c.id for c in pages] == [f"scan.pdf#p{i}" for i in range(1, 5)]
    assert all(c.metadata["source"] == str(scanned_pdf) and c.metadata["dpi"] == 144 for c in pages)
    for cand, (w, h), color in zip(pages, SIZES, COLORS):
        img = load_image(cand.image)
        assert img.size == (2 * w, 2 * h)  # 72-dpi page rendered at 144 dpi
        mean = np.asarray(img, dtype=float).reshape(-1, 3).mean(axis=0)
        np.testing.assert_allclose(mean, color, atol=3)


def test_pdf_pages_render_lazily_and_hold_a_bounded_number(scanned_pdf):
    pages = list(pdf_pages(scanned_pdf, dpi=72, max_rendered=2))
    document = pages[0].image._document
    assert document.renders == 0  # listing pages renders nothing
    for cand in pages:
        load_image(cand.image)
        assert document.rendered_in_memory <= 2
    assert document.renders == 4
    load_image(pages[3].image)  # still in memory: no new render
    assert document.renders == 4
    load_image(pages[0].image)  # dropped earlier: rendered again
    assert document.renders == 5


def test_pdf_page_hash_needs_no_render_and_tracks_dpi(scanned_pdf):
    first = list(pdf_pages(scanned_pdf, dpi=72))
    again = list(pdf_pages(scanned_pdf, dpi=72))
    other_dpi = list(pdf_pages(scanned_pdf, dpi=100))
    assert [image_hash(c.image) for c in first] == [image_hash(c.image) for c in again]
    assert len({image_hash(c.image) for c in first}) == 4
    assert image_hash(first[0].image) != image_hash(other_dpi[0].image)
    assert first[0].image._document.renders == 0


def test_pdf_pages_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="PDF not found"):
        list(pdf_pages(tmp_path / "missing.pdf"))
    not_pdf = tmp_path / "notes.pdf"
    not_pdf.write_text("plain text")
    with pytest.raises(ValueError, match="cannot open PDF"):
        list(pdf_pages(not_pdf))
    with pytest.raises(ValueError, match="dpi must be a positive number"):
        list(pdf_pages(not_pdf, dpi=0))


def test_text_backend_given_pdf_pages_names_the_index(scanned_pdf):
    candidates = ["a text passage"] + list(pdf_pages(scanned_pdf))[:2]
    with pytest.raises(CandidateError, match="candidate 1 is an image without text") as info:
        load_reranker("lexical").rank("query", candidates)
    assert info.value.index == 1


def test_every_image_form_decodes_to_the_same_pixels(tmp_path):
    original = Image.fromarray(np.random.default_rng(0).integers(0, 255, (12, 9, 3), dtype=np.uint8), "RGB")
    path = tmp_path / "page.png"
    original.save(path)
    raw = png_bytes(original)
    b64 = base64.b64encode(raw).decode()
    forms = {
        "pil": original,
        "pil-rgba": original.convert("RGBA"),
        "str path": str(path),
        "pathlike": path,
        "bytes": raw,
        "bytearray": bytearray(raw),
        "base64": b64,
        "urlsafe base64": base64.urlsafe_b64encode(raw).decode().rstrip("="),
        "data url": "data:image/png;base64," + b64,
    }
    expected = np.asarray(original)
    for name, form in forms.items():
        decoded = load_image(form)
        assert decoded.mode == "RGB", name
        np.testing.assert_array_equal(np.asarray(decoded), expected, err_msg=name)
    assert len({image_hash(form) for form in forms.values()}) == 1


def test_http_image_urls_are_fetched(tmp_path):
    """A real stdlib HTTP server on 127.0.0.1 serving a folder."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    pytest.importorskip("httpx")
    Image.new("RGB", (7, 3), (9, 8, 7)).save(tmp_path / "page.png")
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        image = load_image(f"{base}/page.png")
        assert image.size == (7, 3) and image.getpixel((0, 0)) == (9, 8, 7)
        with pytest.raises(ValueError, match="cannot fetch image .*404"):
            load_image(f"{base}/missing.png")
    finally:
        server.shutdown()
        server.server_close()


def test_data_url_helper_round_trips():
    img = Image.new("RGB", (5, 4), (1, 2, 3))
    url = image_to_data_url(img)
    assert url.startswith("data:image/png;base64,")
    np.testing.assert_array_equal(np.asarray(load_image(url)), np.asarray(img))
    assert image_to_data_url(img, format="jpeg").startswith("data:image/jpeg;base64,")


@pytest.mark.parametrize(
    "bad, message",
    [
        ("/no/such/page.png", "image file not found"),
        (b"definitely not an image", "raw bytes .* is not a readable image"),
        ("data:image/png,rawtext", "must be base64-encoded"),
        ("data:image/png;base64,@@@@", "invalid base64"),
        (base64.b64encode(b"0123456789abcdefghij").decode(), "base64 string .* is not a readable image"),
        (12345, "unsupported image type int"),
    ],
)
def test_bad_images_say_what_is_wrong(bad, message):
    with pytest.raises(ValueError, match=message):
        load_image(bad)


def test_image_hash_separates_different_pixels():
    a = Image.new("RGB", (4, 4), (0, 0, 0))
    b = Image.new("RGB", (4, 4), (0, 0, 1))
    c = Image.new("RGB", (2, 8), (0, 0, 0))  # same bytes, other shape
    assert len({image_hash(a), image_hash(b), image_hash(c)}) == 3


def test_fit_pixels_keeps_aspect_and_bounds():
    img = Image.new("RGB", (400, 100))
    down = fit_pixels(img, None, 10_000)
    assert down.size[0] * down.size[1] <= 10_000 and down.size == (200, 50)
    up = fit_pixels(Image.new("RGB", (10, 20)), 5_000, None)
    assert up.size[0] * up.size[1] >= 5_000 and abs(up.size[1] / up.size[0] - 2) < 0.05
    assert fit_pixels(img, 100, 1_000_000) is img


def test_candidate_to_dict_keeps_paths_and_omits_pdf_pages(scanned_pdf):
    page = next(pdf_pages(scanned_pdf))
    assert isinstance(page.image, PdfPageImage)
    data = page.to_dict()
    assert data["image"] is None and data["image_omitted"] == "PdfPageImage"
    assert data["metadata"]["page"] == 1
    assert Candidate(image="page.png").to_dict()["image"] == "page.png"
