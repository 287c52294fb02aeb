"""Issue 17, the LlamaIndex and LangChain adapters: secrets, silent acceptance, deep tracebacks.

Real adapters over real backends (lexical, and the listwise backend's real HTTP client pointed at
a loopback server that records the request headers). One test per defect, each failing on the
code before the fix.
"""

from __future__ import annotations

import http.server
import json
import pickle
import threading
from contextlib import contextmanager

import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("llama_index.core")
pytest.importorskip("httpx")

from langchain_core.documents import Document  # noqa: E402
from llama_index.core.schema import NodeWithScore, TextNode  # noqa: E402

from rankbridge.integrations.adapters.lazy_reranker import LazyReranker  # noqa: E402
from rankbridge.integrations.langchain import RankbridgeCompressor  # noqa: E402
from rankbridge.integrations.llama_index import RankbridgeRerank  # noqa: E402
from rankbridge.rerankers import CandidateError, ConfigError, load_reranker  # noqa: E402

KEY = "sk-live-0123456789abcdef"
QUERY = "capital of France"
TEXTS = ["Bananas are yellow.", "Paris is the capital of France.", "Lyon is a city in France."]
ADAPTERS = [RankbridgeCompressor, RankbridgeRerank]


def secret_spec(base_url: str = "http://127.0.0.1:9/v1") -> dict:
    return {"backend": "listwise", "model": "m", "base_url": base_url, "api_key": KEY, "max_retries": 0, "timeout": 5}


def shown(adapter) -> str:
    """Everything an adapter shows or writes out: repr, str, dumps, JSON, and LlamaIndex's to_json."""
    parts = [repr(adapter), str(adapter), str(adapter.model_dump()), adapter.model_dump_json(), repr(adapter._lazy)]
    if hasattr(adapter, "to_json"):
        parts += [adapter.to_json(), json.dumps(adapter.to_dict())]
    return "\n".join(parts)


@contextmanager
def header_recorder():
    """A real loopback HTTP server that records each request's Authorization header and answers 500."""
    seen: list[str | None] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            seen.append(self.headers.get("Authorization"))
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", seen
    finally:
        server.shutdown()
        server.server_close()


# ---------------------------------------------------------------------- 4. secrets


@pytest.mark.parametrize("adapter_class", ADAPTERS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("form", ["dict", "inline-json", "reranker"])
def test_an_api_key_in_a_spec_is_never_shown(adapter_class, form):
    spec = secret_spec()
    given = {"dict": spec, "inline-json": json.dumps(spec), "reranker": load_reranker(spec)}[form]
    adapter = adapter_class(reranker=given)
    text = shown(adapter)
    assert KEY not in text
    assert "**********" in text


def test_the_lazy_wrapper_never_shows_the_key():
    lazy = LazyReranker(secret_spec())
    assert KEY not in repr(lazy) and "**********" in repr(lazy)


@pytest.mark.parametrize("adapter_class", ADAPTERS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("form", ["dict", "inline-json", "reranker"])
def test_a_pickled_adapter_sends_the_real_key(adapter_class, form):
    # it sent "Authorization: Bearer **********" after a pickle round trip
    with header_recorder() as (url, seen):
        spec = secret_spec(url)
        given = {"dict": spec, "inline-json": json.dumps(spec), "reranker": load_reranker(spec)}[form]
        adapter = pickle.loads(pickle.dumps(adapter_class(reranker=given)))
        reranker = adapter.get_reranker()
        assert reranker.config.api_key.get_secret_value() == KEY
        reranker.config.on_error = "fallback"  # the server answers 500: keep the first-stage order
        results = reranker.rank(QUERY, TEXTS)
        assert results.fallback_reason
    assert seen and set(seen) == {f"Bearer {KEY}"}


# ---------------------------------------------------------------------- 7. silent acceptance


@pytest.mark.parametrize("adapter_class", ADAPTERS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("top_n", [True, False, 2.0, "2"], ids=repr)
def test_adapters_reject_top_n_that_rank_rejects(adapter_class, top_n):
    # top_n=True became 1
    with pytest.raises(ValueError, match="top_n"):
        adapter_class(reranker="lexical", top_n=top_n)
    with pytest.raises(ValueError, match="top_n"):
        load_reranker("lexical").rank(QUERY, TEXTS, top_n=top_n)


@pytest.mark.parametrize("adapter_class", ADAPTERS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("threshold", [True, 2, float("inf"), float("nan"), -0.5], ids=repr)
def test_adapters_reject_a_score_threshold_outside_zero_one(adapter_class, threshold):
    with pytest.raises(ValueError, match="score_threshold"):
        adapter_class(reranker="lexical", score_threshold=threshold)


# ---------------------------------------------------------------------- 8. deep tracebacks


def test_langchain_metadata_with_a_lock_does_not_break_the_compressor():
    lock = threading.Lock()
    docs = [Document(t, metadata={"lock": lock, "tags": ["a"]}) for t in TEXTS]
    out = RankbridgeCompressor(reranker="lexical", top_n=1).compress_documents(docs, QUERY)
    assert out[0].page_content == TEXTS[1]
    assert out[0].metadata["lock"] is lock  # shared: a lock cannot be copied
    assert out[0].metadata["tags"] == ["a"] and out[0].metadata["tags"] is not docs[1].metadata["tags"]
    assert "relevance_score" not in docs[1].metadata  # the caller's metadata is untouched


def test_llama_index_keep_retrieval_score_with_a_lock_in_metadata():
    lock = threading.Lock()
    nodes = [NodeWithScore(node=TextNode(text=t, metadata={"lock": lock}), score=0.1 * i) for i, t in enumerate(TEXTS)]
    out = RankbridgeRerank(reranker="lexical", top_n=1, keep_retrieval_score=True).postprocess_nodes(nodes, query_str=QUERY)
    assert out[0].node.metadata["retrieval_score"] == pytest.approx(0.1)
    assert out[0].node.metadata["lock"] is lock
    assert "retrieval_score" not in nodes[1].node.metadata


def test_compress_documents_takes_a_generator():
    docs = [Document(t) for t in TEXTS]
    out = RankbridgeCompressor(reranker="lexical").compress_documents((d for d in docs), QUERY)
    assert [d.page_content for d in out][0] == TEXTS[1] and len(out) == 3


async def test_acompress_documents_takes_a_generator():
    docs = [Document(t) for t in TEXTS]
    out = await RankbridgeCompressor(reranker="lexical").acompress_documents((d for d in docs), QUERY)
    assert out[0].page_content == TEXTS[1]


def test_postprocess_nodes_takes_a_generator():
    nodes = [NodeWithScore(node=TextNode(text=t), score=0.5) for t in TEXTS]
    out = RankbridgeRerank(reranker="lexical").postprocess_nodes((n for n in nodes), query_str=QUERY)
    assert out[0].node.text == TEXTS[1] and len(out) == 3


@pytest.mark.parametrize("bad", [Document("single"), "text", {"a": 1}], ids=["document", "str", "dict"])
def test_compress_documents_rejects_a_single_item(bad):
    with pytest.raises(TypeError, match="documents"):
        RankbridgeCompressor(reranker="lexical").compress_documents(bad, QUERY)


# ---------------------------------------------------------------------- 1. non-finite first-stage scores


def test_a_non_finite_retrieval_score_is_a_candidate_error_naming_the_document_when_fused():
    docs = [Document(t, metadata={"score": s}) for t, s in zip(TEXTS, [0.2, float("nan"), 0.4])]
    compressor = RankbridgeCompressor(reranker={"backend": "lexical", "fuse_first_stage": 0.5})
    with pytest.raises(CandidateError, match="candidate 1") as info:
        compressor.compress_documents(docs, QUERY)
    assert info.value.index == 1
    nodes = [NodeWithScore(node=TextNode(text=t), score=s) for t, s in zip(TEXTS, [0.2, 0.3, float("inf")])]
    with pytest.raises(CandidateError, match="candidate 2"):
        RankbridgeRerank(reranker={"backend": "identity"}).postprocess_nodes(nodes, query_str=QUERY)


def test_a_bad_inline_spec_is_a_config_error_saying_how_it_was_read():
    with pytest.raises(ConfigError, match="was read as an inline mapping"):
        RankbridgeCompressor(reranker='{"backend": "lexical",')
