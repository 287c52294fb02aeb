"""The TEI and Cohere v1 / Jina shapes over httpx, and the probe, model-list and metrics routes."""

from __future__ import annotations

import base64
import io

import httpx
import pytest
from serve_support import DOCS, QUERY, settings

from rankbridge.rerankers import load_reranker


def ranked(query=QUERY, docs=DOCS):
    return load_reranker("lexical").rank(query, docs)


def test_tei_bare_array_sorted_with_relevance(server):
    r = httpx.post(server.url + "/rerank", json={"query": QUERY, "texts": DOCS})
    assert r.status_code == 200
    body = r.json()
    assert isinstance(body, list)
    want = ranked()
    assert [item["index"] for item in body] == want.indices
    assert [item["score"] for item in body] == pytest.approx(want.relevances, abs=1e-12)
    assert all("text" not in item for item in body)


def test_tei_raw_scores_and_return_text(server):
    body = httpx.post(
        server.url + "/rerank", json={"query": QUERY, "texts": DOCS, "raw_scores": True, "return_text": True, "truncate": True}
    ).json()
    want = ranked()
    assert [item["score"] for item in body] == pytest.approx(want.scores, abs=1e-12)
    assert [item["text"] for item in body] == [DOCS[i] for i in want.indices]


def test_v1_strings_objects_and_return_documents(server):
    docs = [DOCS[0], {"text": DOCS[1]}, {"text": DOCS[2], "source": "pubmed"}, DOCS[3], {"text": DOCS[4]}]
    r = httpx.post(server.url + "/v1/rerank", json={"model": "lexical", "query": QUERY, "documents": docs,
                                                    "top_n": 3, "return_documents": True})
    assert r.status_code == 200
    body = r.json()
    want = ranked()
    assert [x["index"] for x in body["results"]] == want.indices[:3]
    assert [x["relevance_score"] for x in body["results"]] == pytest.approx(want.relevances[:3], abs=1e-12)
    for x in body["results"]:
        original = docs[x["index"]]
        assert x["document"] == ({"text": original} if isinstance(original, str) else original)
    assert body["meta"]["api_version"]["version"] == "1"
    assert body["model"] == "lexical" and body["id"]


def test_v1_without_model_uses_the_default_and_omits_documents(server):
    body = httpx.post(server.url + "/v1/rerank", json={"query": QUERY, "documents": DOCS}).json()
    assert [x["index"] for x in body["results"]] == ranked().indices
    assert all("document" not in x for x in body["results"])
    assert body["model"] == "lexical"


def test_v1_rank_fields(server):
    docs = [{"title": "Bananas", "body": DOCS[3]}, {"title": "Vitamin D and fractures", "body": DOCS[0]}]
    body = httpx.post(server.url + "/v1/rerank", json={"query": QUERY, "documents": docs, "rank_fields": ["title", "body"]}).json()
    assert [x["index"] for x in body["results"]] == [1, 0]


def _png_base64() -> str:
    PIL = pytest.importorskip("PIL.Image")
    buf = io.BytesIO()
    PIL.new("RGB", (4, 4)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_jina_image_document_on_a_text_backend_is_422_naming_the_index(server):
    docs = [DOCS[0], {"image": _png_base64()}]
    r = httpx.post(server.url + "/v1/rerank", json={"model": "lexical", "query": QUERY, "documents": docs})
    assert r.status_code == 422
    body = r.json()
    assert "documents[1]" in body["message"] and body["detail"] == body["message"] and body["id"]
    assert "text only" in body["message"]


def test_image_document_is_never_read_as_a_server_path(server):
    r = httpx.post(server.url + "/v1/rerank", json={"query": QUERY, "documents": [{"image": "/etc/passwd"}]})
    assert r.status_code == 422
    assert "documents[0].image" in r.json()["message"]


def test_health_ready_models(server):
    assert httpx.get(server.url + "/health").json() == {"status": "ok"}
    ready = httpx.get(server.url + "/ready")
    assert ready.status_code == 200
    assert ready.json()["models"] == {"lexical": "ready", "identity": "ready"}
    models = httpx.get(server.url + "/v1/models").json()
    assert [m["id"] for m in models["data"]] == ["lexical", "identity"]
    assert models["data"][0]["backend"] == "lexical" and models["data"][0]["accepts_images"] is False
    assert [m["name"] for m in models["models"]] == ["lexical", "identity"]


def test_metrics_count_requests_documents_latency_and_batches(server):
    def value(text, line_start):
        for line in text.splitlines():
            if line.startswith(line_start):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    before = httpx.get(server.url + "/metrics").text
    httpx.post(server.url + "/rerank", json={"query": QUERY, "texts": DOCS})
    httpx.post(server.url + "/rerank", json={"query": QUERY, "texts": []})
    r = httpx.get(server.url + "/metrics")
    assert r.headers["content-type"].startswith("text/plain")
    after = r.text
    ok = 'rankbridge_requests_total{route="/rerank",status="200"}'
    empty = 'rankbridge_requests_total{route="/rerank",status="400"}'
    docs = 'rankbridge_documents_total{route="/rerank",status="200"}'
    assert value(after, ok) - value(before, ok) == 1
    assert value(after, empty) - value(before, empty) == 1
    assert value(after, docs) - value(before, docs) == len(DOCS)
    assert value(after, 'rankbridge_request_duration_seconds_count{route="/rerank"}') - value(
        before, 'rankbridge_request_duration_seconds_count{route="/rerank"}') == 2
    assert value(after, 'rankbridge_batch_pairs_sum{model="lexical"}') - value(
        before, 'rankbridge_batch_pairs_sum{model="lexical"}') == len(DOCS)


def test_keyed_server_guards_routes_but_not_probes(keyed_server):
    from serve_support import API_KEY

    assert httpx.post(keyed_server.url + "/rerank", json={"query": QUERY, "texts": DOCS}).status_code == 401
    r = httpx.post(keyed_server.url + "/rerank", json={"query": QUERY, "texts": DOCS},
                   headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and r.json()["error_type"] == "Unauthorized"
    ok = httpx.post(keyed_server.url + "/rerank", json={"query": QUERY, "texts": DOCS},
                    headers={"Authorization": f"Bearer {API_KEY}"})
    assert ok.status_code == 200
    assert httpx.get(keyed_server.url + "/v1/models").status_code == 401
    assert httpx.get(keyed_server.url + "/v1/models", headers={"Authorization": f"bearer {API_KEY}"}).status_code == 200
    assert httpx.get(keyed_server.url + "/health").status_code == 200
    assert httpx.get(keyed_server.url + "/ready").status_code == 200
    assert API_KEY not in httpx.get(keyed_server.url + "/metrics").text


def test_jina_image_documents_reach_a_page_backend_and_rank(tmp_path):
    # The success path of images through `rankbridge serve`: base64 pages to a real `ocr-page`
    # (RapidOCR + lexical), answered in the Jina / Cohere v1 shape, best page first.
    pytest.importorskip("rapidocr_onnxruntime")
    from support.text_pages import ANSWER_PAGE, PAGE_LINES, render_text_page
    from support.text_pages import QUERY as PAGE_QUERY

    from rankbridge.integrations.server import BackgroundServer

    def b64(image) -> str:
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        return base64.b64encode(buf.getvalue()).decode()

    spec = f'pages={{"backend": "ocr-page", "inner": "lexical", "cache_dir": "{tmp_path}", "show_progress_bar": false}}'
    docs = [{"image": b64(render_text_page(lines))} for lines in PAGE_LINES]
    with BackgroundServer(settings(spec)) as srv:
        assert httpx.get(srv.url + "/v1/models").json()["data"][0]["accepts_images"] is True
        r = httpx.post(srv.url + "/v1/rerank", json={"model": "pages", "query": PAGE_QUERY, "documents": docs}, timeout=120)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert sorted(x["index"] for x in results) == list(range(len(PAGE_LINES)))
    assert results[0]["index"] == ANSWER_PAGE
    assert all(0.0 <= x["relevance_score"] <= 1.0 for x in results)
