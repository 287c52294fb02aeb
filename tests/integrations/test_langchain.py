"""`RankbridgeCompressor` with real LangChain objects: Documents, a BaseRetriever and Runnables."""

from __future__ import annotations

import asyncio
import base64
import copy
import json

import pytest

pytest.importorskip("langchain_core")

from support.http_rerank_service import HTTPRerankServiceReranker, overlap_scores, rerank_service  # noqa: E402
from langchain_core.callbacks import CallbackManagerForRetrieverRun  # noqa: E402
from langchain_core.documents import Document  # noqa: E402
from langchain_core.retrievers import BaseRetriever  # noqa: E402
from langchain_core.runnables import RunnableLambda, RunnableParallel, RunnablePassthrough  # noqa: E402

from rankbridge.integrations.langchain import RankbridgeCompressor, documents_to_candidates  # noqa: E402
from rankbridge.rerankers import CandidateError, ConfigError, load_reranker  # noqa: E402

QUERY = "what is the capital of France"
TEXTS = [
    "Bananas are yellow and grow in bunches.",
    "Paris is the capital and largest city of France.",
    "The Eiffel Tower is in Paris, France.",
    "Berlin is the capital of Germany.",
]
PNG_1x1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def make_docs(texts=TEXTS, scores=None) -> list[Document]:
    scores = scores or [1.0 - i * 0.1 for i in range(len(texts))]
    return [Document(page_content=t, id=f"d{i}", metadata={"score": s}) for i, (t, s) in enumerate(zip(texts, scores))]


class WordOverlapRetriever(BaseRetriever):
    """A small first stage: documents sharing a word with the query, scored by the overlap."""

    documents: list[Document]
    k: int = 10

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        scores = overlap_scores(query, [d.page_content for d in self.documents])
        hits = sorted((i for i, s in enumerate(scores) if s > 0), key=lambda i: -scores[i])[: self.k]
        return [
            Document(page_content=self.documents[i].page_content, id=self.documents[i].id, metadata={"score": scores[i]})
            for i in hits
        ]


def test_reranks_best_first_and_writes_relevance_score():
    docs = make_docs()
    out = RankbridgeCompressor(reranker="lexical").compress_documents(docs, QUERY)
    expected = load_reranker("lexical").rank(QUERY, TEXTS)
    assert [d.id for d in out] == [f"d{i}" for i in expected.indices]
    assert [d.metadata["relevance_score"] for d in out] == pytest.approx(expected.relevances)
    # The retriever's score stays where it was.
    assert [d.metadata["score"] for d in out] == pytest.approx([1.0 - i * 0.1 for i in expected.indices])


def test_copies_documents_and_metadata_never_sharing_them():
    docs = make_docs()
    docs[1].metadata["nested"] = {"tags": ["a"]}
    before = copy.deepcopy([d.model_dump() for d in docs])
    out = RankbridgeCompressor(reranker="lexical").compress_documents(docs, QUERY)
    assert [d.model_dump() for d in docs] == before
    best = out[0]
    assert best.id == "d1" and best is not docs[1] and best.metadata is not docs[1].metadata
    best.metadata["nested"]["tags"].append("b")
    assert docs[1].metadata["nested"] == {"tags": ["a"]}
    assert type(best) is Document and best.page_content == docs[1].page_content


def test_an_earlier_relevance_score_is_kept_as_retrieval_score():
    docs = [Document(page_content=t, metadata={"relevance_score": 0.5 + i / 10}) for i, t in enumerate(TEXTS)]
    out = RankbridgeCompressor(reranker={"backend": "identity"}).compress_documents(docs, QUERY)
    # identity orders by the first-stage score, read from relevance_score here.
    assert [d.metadata["retrieval_score"] for d in out] == pytest.approx([0.8, 0.7, 0.6, 0.5])
    assert [d.metadata["relevance_score"] for d in out] == pytest.approx([1.0, 0.75, 0.5, 0.25])


def test_top_n_and_score_threshold():
    docs = make_docs()
    assert len(RankbridgeCompressor(reranker="lexical", top_n=2).compress_documents(docs, QUERY)) == 2
    every = RankbridgeCompressor(reranker="lexical").compress_documents(docs, QUERY)
    cut = sorted(d.metadata["relevance_score"] for d in every)[1]
    kept = RankbridgeCompressor(reranker="lexical", score_threshold=cut).compress_documents(docs, QUERY)
    assert len(kept) == len(docs) - 1 and all(d.metadata["relevance_score"] >= cut for d in kept)


def test_empty_input_returns_empty_without_building_the_model():
    compressor = RankbridgeCompressor(reranker="lexical")
    assert list(compressor.compress_documents([], QUERY)) == []
    assert list(asyncio.run(compressor.acompress_documents([], QUERY))) == []
    assert not compressor._lazy.built


def test_query_must_be_a_string():
    with pytest.raises(TypeError, match="query must be a string"):
        RankbridgeCompressor(reranker="lexical").compress_documents(make_docs(), None)


def test_identical_texts_keep_their_own_scores_and_identities():
    docs = make_docs(["same passage", "other passage", "same passage"], scores=[0.2, 0.5, 0.9])
    out = RankbridgeCompressor(reranker={"backend": "identity", "relevance": "minmax"}).compress_documents(docs, "q")
    assert [d.id for d in out] == ["d2", "d1", "d0"]
    assert [d.metadata["relevance_score"] for d in out] == pytest.approx([1.0, 3 / 7, 0.0])
    assert [d.metadata["score"] for d in out] == [0.9, 0.5, 0.2]


def test_retriever_piped_into_the_compressor_with_runnables():
    retriever = WordOverlapRetriever(documents=make_docs())
    compressor = RankbridgeCompressor(reranker="lexical", top_n=2)
    chain = RunnableParallel(documents=retriever, query=RunnablePassthrough()) | RunnableLambda(
        lambda x: compressor.compress_documents(x["documents"], x["query"]),
        afunc=lambda x: compressor.acompress_documents(x["documents"], x["query"]),
    )
    first_stage = retriever.invoke(QUERY)
    expected = load_reranker("lexical").rank(QUERY, [d.page_content for d in first_stage], top_n=2)
    out = chain.invoke(QUERY)
    assert [d.id for d in out] == [first_stage[i].id for i in expected.indices]
    assert all("relevance_score" in d.metadata and "score" in d.metadata for d in out)
    assert [d.id for d in asyncio.run(chain.ainvoke(QUERY))] == [d.id for d in out]
    # batch runs the same chain over several queries
    assert [len(r) for r in chain.batch([QUERY, "Bananas yellow"])] == [2, 1]


def test_first_stage_score_reaches_the_backend():
    docs = make_docs(scores=[0.1, 0.4, 0.3, 0.2])
    out = RankbridgeCompressor(reranker="identity").compress_documents(docs, QUERY)
    assert [d.id for d in out] == ["d1", "d2", "d3", "d0"]
    ignored = RankbridgeCompressor(reranker="identity", first_stage_score_key=None).compress_documents(docs, QUERY)
    assert [d.id for d in ignored] == ["d0", "d1", "d2", "d3"]  # no score: input order


# ---------------------------------------------------------------------- images and PDF pages


def make_pdf(path, sizes):
    pdfium = pytest.importorskip("pypdfium2")
    pdf = pdfium.PdfDocument.new()
    for width, height in sizes:
        pdf.new_page(width, height)
    pdf.save(str(path))
    pdf.close()


def test_documents_that_name_an_image_become_page_candidates(tmp_path):
    png = tmp_path / "page.png"
    png.write_bytes(PNG_1x1)
    b64 = base64.b64encode(PNG_1x1).decode()
    docs = [
        Document(page_content="Paris is the capital of France."),
        Document(page_content="", metadata={"image_path": str(png)}),
        Document(page_content="", metadata={"image_base64": b64}),
        Document(page_content="", metadata={"image": PNG_1x1}),
        Document(page_content="", metadata={"image_url": "https://example.org/p.png"}),
        Document(page_content="a scanned map of France", metadata={"image_path": str(png)}),
    ]
    cands = documents_to_candidates(docs, wants_image=True)
    assert [c.image for c in cands] == [None, str(png), b64, PNG_1x1, "https://example.org/p.png", str(png)]
    assert [c.text for c in cands] == ["Paris is the capital of France.", None, None, None, None, "a scanned map of France"]
    out = RankbridgeCompressor(reranker="identity").compress_documents(docs, "France")
    assert len(out) == 6 and out[1].metadata["image_path"] == str(png)
    with pytest.raises(CandidateError, match="candidate 1 is an image without text") as info:
        RankbridgeCompressor(reranker="lexical").compress_documents(docs, "France")
    assert info.value.index == 1


def test_pdf_page_documents_render_their_page_for_image_backends(tmp_path):
    pdf = tmp_path / "paper.pdf"
    make_pdf(pdf, [(200, 100), (100, 300)])
    docs = [
        Document(page_content="text of page 1", metadata={"source": str(pdf), "page": 0}),  # LangChain: 0-based
        Document(page_content="", metadata={"source": str(pdf), "page": 1}),
        Document(page_content="", metadata={"file_path": str(pdf), "page_number": 1}),  # 1-based
    ]
    from rankbridge.rerankers.pages.images import PdfPageImage, load_image

    pages = documents_to_candidates(docs, wants_image=True)
    assert all(isinstance(c.image, PdfPageImage) for c in pages)  # lazy: rendered when read
    assert [(c.image.source, c.image.page_number) for c in pages] == [(str(pdf), 1), (str(pdf), 2), (str(pdf), 1)]
    sizes = [load_image(c.image).size for c in pages]
    assert sizes[0][0] > sizes[0][1] and sizes[1][1] > sizes[1][0] and sizes[2] == sizes[0]
    # A text backend reads the text and never renders; the page-only documents are named.
    text_only = documents_to_candidates(docs[:1], wants_image=False)
    assert text_only[0].image is None and text_only[0].text == "text of page 1"
    with pytest.raises(CandidateError, match="candidate 1 is an image without text"):
        RankbridgeCompressor(reranker="lexical").compress_documents(docs, "q")


def test_a_missing_pdf_page_names_the_document(tmp_path):
    pdf = tmp_path / "short.pdf"
    make_pdf(pdf, [(100, 100)])
    docs = [Document(page_content="x"), Document(page_content="", metadata={"source": str(pdf), "page": 4})]
    with pytest.raises(CandidateError, match=r"candidate 1 names page 4 \(0-based\) of .*short.pdf, which has 1 pages"):
        documents_to_candidates(docs, wants_image=True)


# ---------------------------------------------------------------------- config and serialization


def test_settings_serialize_without_the_model():
    compressor = RankbridgeCompressor(reranker={"backend": "lexical", "k1": 1.2}, top_n=3)
    data = compressor.model_dump()
    assert data == {"reranker": {"backend": "lexical", "k1": 1.2}, "top_n": 3, "score_threshold": None, "first_stage_score_key": "score"}
    json.dumps(data)
    clone = RankbridgeCompressor(**data)
    assert clone.get_reranker().config.k1 == 1.2
    instance = load_reranker("identity")
    wrapped = RankbridgeCompressor(reranker=instance)
    assert wrapped.get_reranker() is instance and wrapped.model_dump()["reranker"]["backend"] == "identity"


def test_swapping_the_backend_is_a_config_file_change(tmp_path):
    config = tmp_path / "rerank.yaml"
    config.write_text("backend: lexical\n")
    docs = make_docs(scores=[0.1, 0.2, 0.3, 0.4])
    assert RankbridgeCompressor(reranker=str(config)).compress_documents(docs, QUERY)[0].id == "d1"
    config.write_text("reranker:\n  backend: identity\n")
    assert [d.id for d in RankbridgeCompressor(reranker=config).compress_documents(docs, QUERY)] == ["d3", "d2", "d1", "d0"]


def test_bad_settings_fail_when_the_compressor_is_built():
    with pytest.raises(ConfigError, match="field 'b' of backend 'lexical'"):
        RankbridgeCompressor(reranker={"backend": "lexical", "b": 2})
    with pytest.raises(ConfigError, match="unknown backend"):
        RankbridgeCompressor(reranker="no-such-backend")
    with pytest.raises(ValueError, match="top_n"):
        RankbridgeCompressor(reranker="lexical", top_n=-1)
    with pytest.raises(ValueError, match="unexpected|extra"):
        RankbridgeCompressor(reranker="lexical", topn=3)


# ---------------------------------------------------------------------- async


@pytest.fixture(scope="module")
def service():
    with rerank_service(delay_s=0.05) as server:
        yield server


async def test_acompress_awaits_the_backends_async_path(service):
    backend = HTTPRerankServiceReranker(url=service.url)
    compressor = RankbridgeCompressor(reranker=backend, top_n=2)
    outs = await asyncio.gather(*(compressor.acompress_documents(make_docs(), QUERY) for _ in range(5)))
    assert backend.async_calls == 5 and backend.sync_calls == 0
    scores = overlap_scores(QUERY, TEXTS)
    expected = sorted(range(len(TEXTS)), key=lambda i: -scores[i])[:2]
    assert all([d.id for d in out] == [f"d{i}" for i in expected] for out in outs)
    sync = compressor.compress_documents(make_docs(), QUERY)
    assert backend.sync_calls == 1 and [d.id for d in sync] == [d.id for d in outs[0]]


@pytest.mark.slow
def test_pdf_page_documents_are_ranked_by_a_real_page_backend(tmp_path):
    # Documents as LangChain's PDF loaders write them ({"source": ..., "page": 0-based}) with
    # no extracted text: ocr-page (RapidOCR + lexical) reads the rendered pages.
    pytest.importorskip("rapidocr_onnxruntime")
    from support.text_pages import ANSWER_PAGE, PAGE_LINES, QUERY, render_text_page

    pages = [render_text_page(lines) for lines in PAGE_LINES]
    pdf = tmp_path / "scan.pdf"
    pages[0].save(pdf, save_all=True, append_images=pages[1:], resolution=72.0)
    docs = [Document(page_content="", id=f"page{i}", metadata={"source": str(pdf), "page": i}) for i in range(3)]
    compressor = RankbridgeCompressor(
        reranker={"backend": "ocr-page", "inner": "lexical", "cache_dir": str(tmp_path / "ocr"), "show_progress_bar": False},
        top_n=1,
    )
    (best,) = compressor.compress_documents(docs, QUERY)
    assert best.id == f"page{ANSWER_PAGE}" and best.metadata == {"source": str(pdf), "page": ANSWER_PAGE, "relevance_score": best.metadata["relevance_score"]}
    assert best.metadata["relevance_score"] > 0
