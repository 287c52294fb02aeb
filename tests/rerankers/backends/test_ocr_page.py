"""`ocr-page`: real RapidOCR (ONNX weights from PyPI) on generated pages, the OCR cache, inner rerankers.

Pages are small (a few lines of DejaVu Sans) so OCR stays fast on a 2-core CI machine; the
session's pages are read once and reused through the on-disk cache where a test allows.
"""

from __future__ import annotations


import pytest

from rankbridge.rerankers import Candidate, CandidateError, ConfigError, load_reranker
from rankbridge.rerankers.pages.ocr import PageOCR, restore_spaces
from rankbridge.rerankers.pages.images import image_hash, pdf_pages

Image = pytest.importorskip("PIL.Image")
pytest.importorskip("rapidocr_onnxruntime")

pytestmark = pytest.mark.slow

from support.text_pages import PAGE_LINES, QUERY, render_text_page  # noqa: E402  (after the skips above)


@pytest.fixture(scope="module")
def pages():
    return [render_text_page(lines) for lines in PAGE_LINES]


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    """One on-disk OCR cache for the module, so each page is OCR'd once per session."""
    return tmp_path_factory.mktemp("ocr-cache")


def ocr_reranker(cache, **fields):
    spec = {"backend": "ocr-page", "inner": "lexical", "cache_dir": str(cache), "show_progress_bar": False}
    spec.update(fields)
    return load_reranker(spec)


def test_ocr_finds_the_page_that_states_the_answer(pages, shared_cache):
    reranker = ocr_reranker(shared_cache)
    candidates = [Candidate(image=img, id=f"page-{i}") for i, img in enumerate(pages)]
    result = reranker.rank(QUERY, candidates)
    assert result.ids[0] == "page-1"
    assert result[0].relevance > result[1].relevance
    assert all(0.0 <= r.relevance <= 1.0 for r in result)
    texts = reranker.ocr_texts(candidates)
    assert "Lyon" in texts[1] and "eleven" in texts[1]
    assert "Bananas" in texts[2]


def test_second_rank_is_served_from_memory(pages, tmp_path):
    reranker = ocr_reranker(tmp_path)
    candidates = [Candidate(image=img) for img in pages]
    first = reranker.rank(QUERY, candidates)
    misses = reranker.ocr.stats.misses
    assert misses == len(pages)
    second = reranker.rank(QUERY, candidates)
    assert reranker.ocr.stats.misses == misses  # no page was OCR'd again
    assert reranker.ocr.stats.memory_hits >= len(pages)
    assert second.ids == first.ids and second.scores == first.scores

    # A new process (a new reranker) reads the same pages from disk.
    fresh = ocr_reranker(tmp_path)
    third = fresh.rank(QUERY, candidates)
    assert fresh.ocr.stats.misses == 0 and fresh.ocr.stats.disk_hits == len(pages)
    assert third.ids == first.ids
    files = list(tmp_path.rglob("*.txt"))
    assert sorted(f.stem for f in files) == sorted(image_hash(img) for img in pages)


def test_same_page_in_other_forms_is_read_once(pages, tmp_path):
    path = tmp_path / "page.png"
    pages[1].save(path)
    reranker = ocr_reranker(tmp_path / "cache")
    forms = [Candidate(image=pages[1]), Candidate(image=str(path)), Candidate(image=path.read_bytes())]
    texts = reranker.ocr_texts(forms)
    assert reranker.ocr.stats.misses == 1
    assert texts[0] == texts[1] == texts[2]


def test_memory_only_cache_writes_nothing(pages, tmp_path):
    reranker = ocr_reranker(tmp_path, disk_cache=False)
    reranker.ocr_texts([Candidate(image=pages[0])])
    assert reranker.ocr.cache_dir is None
    assert not any(tmp_path.iterdir())


def test_rank_many_reads_shared_pages_once(pages, shared_cache):
    reranker = ocr_reranker(shared_cache)
    reranker.ocr.clear_memory()
    lists = [[Candidate(image=p) for p in pages], [Candidate(image=pages[2]), Candidate(image=pages[0])]]
    results = reranker.rank_many([QUERY, "which fruit has potassium"], lists)
    assert reranker.ocr.stats.misses + reranker.ocr.stats.disk_hits == len(pages)
    assert results[0].indices[0] == 1
    assert results[1].indices[0] == 0  # the banana page, first in the second list


def test_scanned_pdf_pages_rank_with_page_metadata(pages, tmp_path, shared_cache):
    path = tmp_path / "scan.pdf"
    pages[0].save(path, save_all=True, append_images=pages[1:], resolution=72.0)
    reranker = ocr_reranker(shared_cache)
    result = reranker.rank(QUERY, list(pdf_pages(path, dpi=144)), top_n=1)
    assert result.ids == ["scan.pdf#p2"]
    assert result[0].candidate.metadata == {"source": str(path), "page": 2, "dpi": 144.0}


def test_include_candidate_text_appends_the_caption(pages, shared_cache):
    reranker = ocr_reranker(shared_cache, include_candidate_text=True)
    candidates = [Candidate(image=pages[0], text="timetable: Lyon train departures"), Candidate(image=pages[2])]
    assert reranker.rank("Lyon timetable", candidates).indices[0] == 0


def test_candidate_without_image_names_its_index(pages, shared_cache):
    reranker = ocr_reranker(shared_cache)
    with pytest.raises(CandidateError, match="candidate 1 has no image"):
        reranker.rank(QUERY, [Candidate(image=pages[0]), "plain text"])
    with pytest.raises(CandidateError, match="candidate 0: cannot read its image"):
        reranker.rank(QUERY, [Candidate(image="/no/such/scan.png")])


def test_inner_must_be_a_known_text_reranker(tmp_path):
    with pytest.raises(ConfigError, match="field 'inner'.*unknown backend 'no-such-backend'"):
        ocr_reranker(tmp_path, inner="no-such-backend")
    with pytest.raises(ConfigError, match="inner must be a text reranker"):
        ocr_reranker(tmp_path, inner={"backend": "vlm-page", "model": "x"})
    with pytest.raises(ConfigError, match="text_score"):
        ocr_reranker(tmp_path, text_score=2)


def test_inner_cross_encoder_scores_the_ocr_text(pages, shared_cache, model_dir):
    pytest.importorskip("rankbridge.rerankers.backends.cross_encoder")
    reranker = ocr_reranker(shared_cache, inner="cross-encoder:minilm-l6-ce-weak")
    candidates = [Candidate(image=img) for img in pages]
    result = reranker.rank(QUERY, candidates)
    texts = [Candidate(text=t) for t in reranker.ocr_texts(candidates)]
    direct = reranker.inner.rank(QUERY, texts)
    # The page scores are exactly the inner reranker's scores of the OCR text.
    assert result.indices == direct.indices
    assert result.scores == pytest.approx(direct.scores)


def test_restore_spaces_splits_merged_words_only():
    assert restore_spaces("Aspirinlowerstheriskofheart attacks.") == "Aspirin lowers the risk of heart attacks."
    assert restore_spaces("admitted to theICU in") == "admitted to the ICU in"
    for kept in ("immunohistochemistry", "pathogenesis", "IL-23-responsive", "short"):
        assert restore_spaces(kept) == kept


def test_ocr_cache_key_changes_with_settings(tmp_path):
    assert PageOCR(tmp_path, text_score=0.5).signature != PageOCR(tmp_path, text_score=0.7).signature
    assert PageOCR(tmp_path, num_threads=1).signature == PageOCR(tmp_path, num_threads=2).signature


def test_cache_holds_raw_text_and_spaces_are_restored_on_read(tmp_path):
    page = Image.new("RGB", (40, 20), "white")
    writer = PageOCR(tmp_path)
    key = image_hash(page)
    path = tmp_path / writer.signature / key[:2] / f"{key}.txt"
    path.parent.mkdir(parents=True)
    path.write_text("Aspirinlowerstheriskofheart attacks")
    assert PageOCR(tmp_path, restore_spaces=True).read([page]) == ["Aspirin lowers the risk of heart attacks"]
    raw = PageOCR(tmp_path, restore_spaces=False)
    assert raw.read([page]) == ["Aspirinlowerstheriskofheart attacks"]
    assert raw.stats.misses == 0 and raw.stats.disk_hits == 1
