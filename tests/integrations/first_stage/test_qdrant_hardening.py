"""Issue 17, the Qdrant first stage: names that become paths, unreachable servers, and the
ecosystems' own conventions, checked by LangChain's standard retriever suite (`langchain-tests`).

Real embedded Qdrant (qdrant-edge-py, qdrant-client local mode) with the real embedders; the
server cases use a real closed port and a real listening socket that never answers.
"""

from __future__ import annotations

import socket

import pytest

pytest.importorskip("qdrant_edge")
pytest.importorskip("qdrant_client")

from rankbridge.integrations.first_stage.qdrant import HybridRetriever  # noqa: E402
from rankbridge.rerankers import BackendError, ConfigError  # noqa: E402

pytestmark = pytest.mark.slow  # loads the all-MiniLM-L6-v2 weights (ONNX int8)

DOCS = [
    {"id": "d1", "text": "Vitamin D supplementation reduces hip fractures in the elderly."},
    {"id": "d2", "text": "Bananas are a yellow fruit rich in potassium."},
    {"id": "d3", "text": "Qdrant is a vector database with hybrid search over sparse and dense vectors."},
    {"id": "d4", "text": "Calcium and vitamin D together strengthen bones and prevent fractures."},
    {"id": "d5", "text": "Espresso is coffee brewed by forcing hot water through ground beans."},
]
QUERY = "vitamin D and bone fractures"

_STORE: HybridRetriever | None = None


def shared_store() -> HybridRetriever:
    """One indexed embedded store for the whole module (the standard suite builds retrievers
    from constructor params, not fixtures)."""
    global _STORE
    if _STORE is None:
        _STORE = HybridRetriever(show_progress=False)
        _STORE.index(DOCS)
    return _STORE


def teardown_module(module) -> None:
    if _STORE is not None:
        _STORE.close()


# ---------------------------------------------------------------------- 5. path escape


@pytest.mark.parametrize("name", ["../../x", "../x", "a/b", "/abs", "..", ".", "", ".hidden", "x" * 256, "a\\b", "na\x00me"])
@pytest.mark.parametrize("store", ["edge", "qdrant-client"])
def test_a_collection_name_that_is_not_a_plain_name_is_rejected(tmp_path, name, store):
    root = tmp_path / "a" / "b" / "store"
    with pytest.raises(ConfigError, match="collection_name"):
        HybridRetriever(root, store=store, collection_name=name, show_progress=False)
    assert sorted(p.name for p in tmp_path.rglob("*")) == []  # nothing written anywhere, inside or out


def test_a_store_path_that_is_a_file_is_a_config_error(tmp_path):
    path = tmp_path / "store.txt"
    path.write_text("not a folder")
    with pytest.raises(ConfigError, match="not a folder"):
        HybridRetriever(path, show_progress=False)
    assert path.read_text() == "not a folder"


# ---------------------------------------------------------------------- 8. unreachable servers


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_closed_server_port_is_one_backend_error_naming_the_url():
    url = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(BackendError, match=f"Qdrant server {url}: connecting failed"):
        HybridRetriever(url=url, timeout=1, show_progress=False)


def test_a_silent_server_port_times_out_as_one_backend_error():
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(BackendError, match="timed out"):
            HybridRetriever(url=url, timeout=1, show_progress=False)


@pytest.mark.parametrize("timeout", [0, -1, float("inf"), float("nan"), True])
def test_a_bad_timeout_is_a_config_error(timeout):
    with pytest.raises(ConfigError, match="timeout"):
        HybridRetriever(url="http://127.0.0.1:1", timeout=timeout)


# ---------------------------------------------------------------------- 11. LangChain's k, LlamaIndex's similarity_top_k


def test_as_langchain_takes_k_on_the_retriever_and_per_call():
    store = shared_store()
    retriever = store.as_langchain(k=3)
    assert len(retriever.invoke(QUERY)) == 3
    assert len(retriever.invoke(QUERY, k=1)) == 1
    assert [d.id for d in retriever.invoke(QUERY, k=2)] == [c.id for c in store.search(QUERY, limit=2)]
    assert len(store.as_langchain(limit=2).invoke(QUERY)) == 2  # the older name still works
    with pytest.raises(ConfigError, match="disagree"):
        store.as_langchain(k=2, limit=3)
    with pytest.raises(ValueError, match="k must be a positive int"):
        retriever.invoke(QUERY, k=0)


async def test_langchain_ainvoke_takes_k():
    retriever = shared_store().as_langchain(k=4)
    assert len(await retriever.ainvoke(QUERY)) == 4
    assert len(await retriever.ainvoke(QUERY, k=2)) == 2


def test_as_llama_index_takes_similarity_top_k():
    store = shared_store()
    retriever = store.as_llama_index(similarity_top_k=2)
    assert retriever.similarity_top_k == 2
    nodes = retriever.retrieve(QUERY)
    assert [n.node.node_id for n in nodes] == [c.id for c in store.search(QUERY, limit=2)]
    assert len(store.as_llama_index(limit=1).retrieve(QUERY)) == 1
    with pytest.raises(ValueError, match="similarity_top_k"):
        store.as_llama_index(similarity_top_k=0)


async def test_llama_index_aretrieve():
    nodes = await shared_store().as_llama_index(similarity_top_k=3).aretrieve(QUERY)
    assert len(nodes) == 3


langchain_tests = pytest.importorskip("langchain_tests.integration_tests")


class TestHybridRetrieverLangChainStandard(langchain_tests.RetrieversIntegrationTests):
    """LangChain's own standard retriever suite against `HybridRetriever.as_langchain()`'s class."""

    @property
    def retriever_constructor(self):
        from rankbridge.integrations.langchain import RankbridgeHybridRetriever

        return RankbridgeHybridRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        return {"hybrid": shared_store()}

    @property
    def retriever_query_example(self) -> str:
        return QUERY


def test_the_standard_suite_tests_the_class_as_langchain_returns():
    from rankbridge.integrations.langchain import RankbridgeHybridRetriever

    assert type(shared_store().as_langchain()) is RankbridgeHybridRetriever
