"""Issue 17, page images: an image without pixels is the caller's (a `CandidateError` naming the
candidate under every policy), and an image URL fetch has an overall deadline, not a per-read one.

The slow server is a real loopback HTTP server that sends a real PNG one byte at a time.
"""

from __future__ import annotations

import http.server
import io
import threading
import time
from contextlib import contextmanager

import pytest

PIL = pytest.importorskip("PIL.Image")
pytest.importorskip("httpx")

from rankbridge.rerankers import Candidate, CandidateError, load_reranker  # noqa: E402
from rankbridge.rerankers.pages import images  # noqa: E402
from rankbridge.rerankers.pages.images import candidate_image, candidate_image_hash, load_image  # noqa: E402


def png_bytes(size=(3, 2)) -> bytes:
    buffer = io.BytesIO()
    PIL.new("RGB", size, (200, 10, 10)).save(buffer, format="PNG")
    return buffer.getvalue()


@contextmanager
def trickling_server(body: bytes, seconds_per_byte: float):
    """Serves `body` at /image.png one byte every `seconds_per_byte` (each write is flushed)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                for i in range(len(body)):
                    self.wfile.write(body[i : i + 1])
                    self.wfile.flush()
                    time.sleep(seconds_per_byte)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up: what the deadline is for

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/image.png"
    finally:
        server.shutdown()
        server.server_close()


# ---------------------------------------------------------------------- 3. images without pixels


@pytest.mark.parametrize("size", [(0, 0), (0, 5), (7, 0)])
def test_an_image_without_pixels_is_a_value_error(size):
    with pytest.raises(ValueError, match="pixels"):
        load_image(PIL.new("RGB", size))


def test_an_image_without_pixels_is_a_candidate_error_naming_the_candidate():
    candidate = Candidate(image=PIL.new("RGB", (0, 0)))
    with pytest.raises(CandidateError, match="candidate 3") as info:
        candidate_image(3, candidate)
    assert info.value.index == 3
    with pytest.raises(CandidateError, match="candidate 4"):
        candidate_image_hash(4, candidate)


@pytest.mark.slow
@pytest.mark.parametrize("on_error", ["raise", "fallback"])
def test_a_page_backend_given_a_0x0_image_raises_a_candidate_error_under_every_policy(tmp_path, on_error):
    pytest.importorskip("rapidocr_onnxruntime")
    reranker = load_reranker(
        {"backend": "ocr-page", "inner": "lexical", "cache_dir": str(tmp_path), "show_progress_bar": False, "on_error": on_error}
    )
    pages = [Candidate(image=PIL.new("RGB", (40, 30), "white"), score=1.0), Candidate(image=PIL.new("RGB", (0, 0)), score=0.5)]
    with pytest.raises(CandidateError, match="candidate 1") as info:
        reranker.rank("anything", pages)
    assert info.value.index == 1


# ---------------------------------------------------------------------- 6. an overall deadline


def test_an_image_url_that_trickles_bytes_hits_the_overall_deadline(monkeypatch):
    # one byte every 50 ms, about 70 bytes: each read is quick, the whole body takes ~3.5 s.
    # No single read may time out, even when a loaded CI machine stalls the server's thread: the
    # per-read limit is 20x the gap between bytes (the overall deadline caps it at 1 s anyway).
    monkeypatch.setattr(images, "IMAGE_FETCH_TIMEOUT", 1.0)
    monkeypatch.setattr(images, "IMAGE_FETCH_READ_TIMEOUT", 1.0)
    body = png_bytes()
    with trickling_server(body, 0.05) as url:
        with pytest.raises(ValueError, match=r"still loading after the 1 s deadline"):
            load_image(url)
        with pytest.raises(CandidateError, match="candidate 0"):
            candidate_image(0, Candidate(image=url))


def test_an_image_url_within_the_deadline_loads(monkeypatch):
    monkeypatch.setattr(images, "IMAGE_FETCH_TIMEOUT", 20.0)
    body = png_bytes((5, 4))
    with trickling_server(body, 0.0) as url:
        assert load_image(url).size == (5, 4)


def test_an_image_url_larger_than_the_cap_is_refused(monkeypatch):
    monkeypatch.setattr(images, "IMAGE_FETCH_MAX_BYTES", 16)
    with trickling_server(png_bytes(), 0.0) as url:
        with pytest.raises(ValueError, match="larger than 16 bytes"):
            load_image(url)
