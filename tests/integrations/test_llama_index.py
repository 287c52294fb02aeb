"""`RankbridgeRerank` with real LlamaIndex objects: nodes, query bundles, a RetrieverQueryEngine,
the instrumentation dispatcher and the callback manager."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import pickle
import time

import pytest

pytest.importorskip("llama_index.core")

from support.http_rerank_service import HTTPRerankServiceReranker, overlap_scores, rerank_service  # noqa: E402
from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload, LlamaDebugHandler  # noqa: E402
from llama_index.core.instrumentation import get_dispatcher  # noqa: E402
from llama_index.core.instrumentation.event_handlers import BaseEventHandler  # noqa: E402
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent  # noqa: E402
from llama_index.core.indices.prompt_helper import PromptHelper  # noqa: E402
from llama_index.core.llms import MockLLM  # noqa: E402
from llama_index.core.query_engine import RetrieverQueryEngine  # noqa: E402
from llama_index.core.retrievers import BaseRetriever  # noqa: E402
from llama_index.core.response_synthesizers.no_text import NoText  # noqa: E402
from llama_index.core.schema import ImageNode, MetadataMode, NodeWithScore, QueryBundle, TextNode  # noqa: E402

from rankbridge.integrations.llama_index import RankbridgeRerank, nodes_to_candidates  # noqa: E402
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


def make_nodes(texts=TEXTS, scores=None) -> list[NodeWithScore]:
    scores = scores or [1.0 - i * 0.1 for i in range(len(texts))]
    return [NodeWithScore(node=TextNode(text=t, id_=f"n{i}"), score=s) for i, (t, s) in enumerate(zip(texts, scores))]


def test_reranks_best_first_with_calibrated_scores():
    nodes = make_nodes()
    out = RankbridgeRerank(reranker="lexical").postprocess_nodes(nodes, query_str=QUERY)
    expected = load_reranker("lexical").rank(QUERY, TEXTS)
    assert [n.node.node_id for n in out] == [f"n{i}" for i in expected.indices]
    assert [n.score for n in out] == pytest.approx(expected.relevances)
    assert out[0].node.node_id == "n1"
    assert all(0.0 <= n.score <= 1.0 for n in out)


def test_top_n_and_score_threshold():
    nodes = make_nodes()
    assert len(RankbridgeRerank(reranker="lexical", top_n=2).postprocess_nodes(nodes, query_str=QUERY)) == 2
    all_scores = [n.score for n in RankbridgeRerank(reranker="lexical").postprocess_nodes(nodes, query_str=QUERY)]
    cut = sorted(all_scores)[1]  # strictly above the lowest
    kept = RankbridgeRerank(reranker="lexical", score_threshold=cut).postprocess_nodes(nodes, query_str=QUERY)
    assert len(kept) == len(nodes) - 1 and all(n.score >= cut for n in kept)


def test_query_bundle_and_query_str_give_the_same_result():
    rerank = RankbridgeRerank(reranker="lexical")
    a = rerank.postprocess_nodes(make_nodes(), query_bundle=QueryBundle(QUERY))
    b = rerank.postprocess_nodes(make_nodes(), query_str=QUERY)
    assert [(n.node.node_id, n.score) for n in a] == [(n.node.node_id, n.score) for n in b]


def test_missing_query_raises_value_error():
    rerank = RankbridgeRerank(reranker="lexical")
    with pytest.raises(ValueError, match="needs a query"):
        rerank.postprocess_nodes(make_nodes())
    with pytest.raises(ValueError, match="needs a query"):
        asyncio.run(rerank.apostprocess_nodes(make_nodes()))


def test_empty_list_returns_empty_without_building_the_model():
    rerank = RankbridgeRerank(reranker="lexical")
    assert rerank.postprocess_nodes([], query_str=QUERY) == []
    assert asyncio.run(rerank.apostprocess_nodes([], query_str=QUERY)) == []
    assert not rerank._lazy.built


def test_identical_texts_keep_their_own_scores_and_identities():
    # Two nodes with the same text but different first-stage scores: a mapping by text would
    # give both the same score or swap them; mapping by position keeps each its own.
    nodes = make_nodes(["same passage", "other passage", "same passage"], scores=[0.2, 0.5, 0.9])
    out = RankbridgeRerank(reranker={"backend": "identity", "relevance": "minmax"}).postprocess_nodes(
        nodes, query_str="q"
    )
    assert [n.node for n in out] == [nodes[2].node, nodes[1].node, nodes[0].node]
    assert out[0].node is nodes[2].node and out[2].node is nodes[0].node
    assert [n.score for n in out] == pytest.approx([1.0, 3 / 7, 0.0])


def test_duplicate_texts_tie_in_input_order():
    nodes = make_nodes(["Paris is the capital of France.", "Bananas.", "Paris is the capital of France."])
    out = RankbridgeRerank(reranker="lexical").postprocess_nodes(nodes, query_str=QUERY)
    assert [n.node.node_id for n in out] == ["n0", "n2", "n1"]
    assert out[0].score == out[1].score


def test_returns_new_objects_and_never_mutates_the_callers_nodes():
    nodes = make_nodes()
    nodes[1].node.metadata["nested"] = {"tags": ["a"]}
    before = copy.deepcopy([(n.node.model_dump(), n.score) for n in nodes])
    rerank = RankbridgeRerank(reranker="lexical", keep_retrieval_score=True)
    out = rerank.postprocess_nodes(nodes, query_str=QUERY)
    assert [(n.node.model_dump(), n.score) for n in nodes] == before
    assert not any(o is n for o in out for n in nodes)
    best = out[0]
    assert best.node.node_id == "n1" and best.node is not nodes[1].node
    assert best.node.metadata["retrieval_score"] == pytest.approx(0.9)
    best.node.metadata["nested"]["tags"].append("b")  # the copy's metadata is its own
    assert nodes[1].node.metadata["nested"] == {"tags": ["a"]}
    # The kept score does not leak into the text an embedder or an LLM reads.
    for mode in (MetadataMode.EMBED, MetadataMode.LLM):
        assert "retrieval_score" not in best.node.get_content(metadata_mode=mode)


def test_without_keep_retrieval_score_the_node_is_shared_and_unchanged():
    nodes = make_nodes()
    out = RankbridgeRerank(reranker="lexical").postprocess_nodes(nodes, query_str=QUERY)
    assert out[0].node is nodes[1].node and "retrieval_score" not in nodes[1].node.metadata
    assert nodes[1].score == pytest.approx(0.9)


def test_metadata_mode_decides_the_text_sent():
    # The query word appears only in metadata: EMBED text includes it, NONE does not,
    # and excluded_embed_metadata_keys is honoured.
    shown = TextNode(text="A city on the Seine.", id_="shown", metadata={"country": "France"})
    hidden = TextNode(
        text="A city on the Seine.",
        id_="hidden",
        metadata={"country": "France"},
        excluded_embed_metadata_keys=["country"],
    )
    plain = TextNode(text="Some unrelated words here.", id_="plain")
    nodes = [NodeWithScore(node=n, score=0.0) for n in (plain, hidden, shown)]
    embed = RankbridgeRerank(reranker="lexical").postprocess_nodes(nodes, query_str="France")
    assert embed[0].node.node_id == "shown" and embed[0].score > embed[1].score
    none = RankbridgeRerank(reranker="lexical", metadata_mode=MetadataMode.NONE).postprocess_nodes(
        nodes, query_str="France"
    )
    assert [n.node.node_id for n in none] == ["plain", "hidden", "shown"]  # all zero: input order
    assert {n.score for n in none} == {0.0}


class ListRetriever(BaseRetriever):
    """A small first stage: every node it holds, with its first-stage score. (An index would
    need Settings' tokenizer, which llama-index-core downloads on first use.)"""

    def __init__(self, nodes: list[NodeWithScore]):
        super().__init__()
        self.nodes = nodes

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return [NodeWithScore(node=n.node, score=n.score) for n in self.nodes]


def test_retriever_query_engine_with_no_text_response():
    retriever = ListRetriever(make_nodes())
    rerank = RankbridgeRerank(reranker="lexical", top_n=2)
    # NoText is built directly: get_response_synthesizer("no_text") drops its llm= and
    # would fall back to Settings.llm (OpenAI).
    # A local tokenizer: the default one (tiktoken) is downloaded on first use by older versions.
    synthesizer = NoText(llm=MockLLM(), prompt_helper=PromptHelper(tokenizer=str.split))
    engine = RetrieverQueryEngine(retriever, response_synthesizer=synthesizer, node_postprocessors=[rerank])
    expected = [f"n{i}" for i in load_reranker("lexical").rank(QUERY, TEXTS, top_n=2).indices]
    response = engine.query(QUERY)
    assert [n.node.node_id for n in response.source_nodes] == expected
    assert not response.response  # no_text: retrieval and reranking only
    aresponse = asyncio.run(engine.aquery(QUERY))
    assert [n.node.node_id for n in aresponse.source_nodes] == expected


class CollectingEventHandler(BaseEventHandler):
    events: list = []

    @classmethod
    def class_name(cls) -> str:
        return "CollectingEventHandler"

    def handle(self, event, **kwargs) -> None:
        if isinstance(event, (ReRankStartEvent, ReRankEndEvent)):
            self.events.append(event)


@pytest.fixture
def rerank_events():
    handler = CollectingEventHandler(events=[])
    root = get_dispatcher()
    root.add_event_handler(handler)
    try:
        yield handler.events
    finally:
        root.event_handlers.remove(handler)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_emits_rerank_events_and_the_reranking_callback(rerank_events, mode):
    debug = LlamaDebugHandler(print_trace_on_end=False)
    rerank = RankbridgeRerank(reranker={"backend": "lexical"}, top_n=3, callback_manager=CallbackManager([debug]))
    nodes = make_nodes()
    if mode == "sync":
        out = rerank.postprocess_nodes(nodes, query_str=QUERY)
    else:
        out = asyncio.run(rerank.apostprocess_nodes(nodes, query_str=QUERY))
    start, end = rerank_events
    assert isinstance(start, ReRankStartEvent) and isinstance(end, ReRankEndEvent)
    assert start.query.query_str == QUERY and start.top_n == 3 and start.model_name == "lexical"
    assert start.nodes == nodes and end.nodes == out
    ((cb_start, cb_end),) = debug.get_event_pairs(CBEventType.RERANKING)
    assert cb_start.payload[EventPayload.QUERY_STR] == QUERY
    assert cb_start.payload[EventPayload.MODEL_NAME] == "lexical"
    assert cb_start.payload[EventPayload.TOP_K] == 3
    assert cb_end.payload[EventPayload.NODES] == out


def test_no_events_for_empty_input(rerank_events):
    RankbridgeRerank(reranker="lexical").postprocess_nodes([], query_str=QUERY)
    assert rerank_events == []


def test_model_name_names_the_model():
    rerank = RankbridgeRerank(reranker={"backend": "identity"})
    assert rerank.reranker_model_name == "identity"


# ---------------------------------------------------------------------- images


def image_nodes(tmp_path) -> list[NodeWithScore]:
    path = tmp_path / "page.png"
    path.write_bytes(PNG_1x1)
    b64 = base64.b64encode(PNG_1x1).decode()
    nodes = [
        TextNode(text="Paris is the capital of France.", id_="text"),
        ImageNode(image=b64, id_="base64"),
        ImageNode(image_path=str(path), id_="path"),
        ImageNode(image_url="https://example.org/page.png", id_="url"),
        ImageNode(image_path=str(path), text="caption: a map of France", id_="captioned"),
        TextNode(text="", metadata={"file_path": str(tmp_path / "doc.pdf"), "page": 3}, id_="pdf-page-no-text"),
    ]
    return [NodeWithScore(node=n, score=1.0 - i / 10) for i, n in enumerate(nodes)]


def test_image_nodes_become_page_candidates(tmp_path):
    nodes = image_nodes(tmp_path)[:5]
    cands = nodes_to_candidates(nodes, wants_image=True)
    b64 = base64.b64encode(PNG_1x1).decode()
    assert [c.image for c in cands] == [None, b64, str(tmp_path / "page.png"), "https://example.org/page.png", str(tmp_path / "page.png")]
    assert [c.text for c in cands] == ["Paris is the capital of France.", None, None, None, "caption: a map of France"]
    assert [c.id for c in cands] == ["text", "base64", "path", "url", "captioned"]
    assert [c.score for c in cands] == pytest.approx([1.0, 0.9, 0.8, 0.7, 0.6])
    # A text backend does not need the caption node's image; an image-only node keeps it.
    text_only = nodes_to_candidates(nodes, wants_image=False)
    assert [c.image is not None for c in text_only] == [False, True, True, True, False]


def test_image_nodes_go_through_a_backend_that_accepts_images(tmp_path):
    nodes = image_nodes(tmp_path)[:5]
    out = RankbridgeRerank(reranker="identity").postprocess_nodes(nodes, query_str="map of France")
    assert [n.node.node_id for n in out] == ["text", "base64", "path", "url", "captioned"]
    assert isinstance(out[1].node, ImageNode)


def test_text_backend_rejects_an_image_node_naming_its_position(tmp_path):
    nodes = image_nodes(tmp_path)
    with pytest.raises(CandidateError, match="candidate 1 is an image without text") as info:
        RankbridgeRerank(reranker="lexical").postprocess_nodes(nodes, query_str="France")
    assert info.value.index == 1
    # Text and captioned nodes alone are fine for a text backend.
    out = RankbridgeRerank(reranker="lexical").postprocess_nodes([nodes[0], nodes[4]], query_str="map")
    assert [n.node.node_id for n in out] == ["captioned", "text"]


def test_node_with_image_resource_is_a_page_candidate(tmp_path):
    from llama_index.core.schema import MediaResource, Node

    path = tmp_path / "scan.png"
    path.write_bytes(PNG_1x1)
    node = Node(image_resource=MediaResource(path=path), id_="multimodal")
    (cand,) = nodes_to_candidates([NodeWithScore(node=node, score=0.3)], wants_image=True)
    assert cand.image == str(path) and cand.text is None and cand.id == "multimodal"


# ---------------------------------------------------------------------- config and serialization


def test_settings_serialize_without_the_model():
    rerank = RankbridgeRerank(reranker={"backend": "lexical", "k1": 1.2}, top_n=3, keep_retrieval_score=True)
    data = rerank.to_dict()
    assert data["class_name"] == "RankbridgeRerank"
    assert data["reranker"] == {"backend": "lexical", "k1": 1.2} and data["top_n"] == 3
    json.dumps(data)
    clone = RankbridgeRerank.from_dict(data)
    assert clone.top_n == 3 and clone.keep_retrieval_score and clone.get_reranker().config.k1 == 1.2
    restored = pickle.loads(pickle.dumps(rerank))
    assert restored.to_dict() == data


def test_a_reranker_instance_serializes_as_its_config():
    reranker = load_reranker({"backend": "lexical", "b": 0.5})
    rerank = RankbridgeRerank(reranker=reranker)
    assert rerank.get_reranker() is reranker
    spec = rerank.to_dict()["reranker"]
    assert spec["backend"] == "lexical" and spec["b"] == 0.5
    assert RankbridgeRerank.from_dict(rerank.to_dict()).get_reranker().config == reranker.config


def test_swapping_the_backend_is_a_config_file_change(tmp_path):
    config = tmp_path / "rerank.yaml"
    config.write_text("backend: lexical\n")
    nodes = make_nodes(scores=[0.1, 0.2, 0.3, 0.4])
    lexical = RankbridgeRerank(reranker=str(config)).postprocess_nodes(nodes, query_str=QUERY)
    config.write_text("backend: identity\n")
    identity = RankbridgeRerank(reranker=config).postprocess_nodes(nodes, query_str=QUERY)
    assert lexical[0].node.node_id == "n1"
    assert [n.node.node_id for n in identity] == ["n3", "n2", "n1", "n0"]


def test_bad_config_fails_when_the_postprocessor_is_built():
    with pytest.raises(ConfigError, match="field 'k1' of backend 'lexical'"):
        RankbridgeRerank(reranker={"backend": "lexical", "k1": -1})
    with pytest.raises(ConfigError, match="unknown backend 'nope'"):
        RankbridgeRerank(reranker="nope")
    with pytest.raises(ConfigError, match="not found"):
        RankbridgeRerank(reranker="missing.yaml")
    with pytest.raises(ValueError, match="top_n"):
        RankbridgeRerank(reranker="lexical", top_n=0)


def test_reranker_from_the_environment(monkeypatch):
    monkeypatch.setenv("RANKBRIDGE_RERANKER", '{"backend": "identity"}')
    rerank = RankbridgeRerank()
    assert rerank.reranker is None and rerank.get_reranker().config.backend == "identity"


# ---------------------------------------------------------------------- async


@pytest.fixture(scope="module")
def service():
    # 0.5 s per answer: the service's delay, not the client's overhead (which grows with load on a
    # slow CI machine), dominates the timing check below; 20 calls one after another take >= 10 s.
    with rerank_service(delay_s=0.5) as server:
        yield server


async def test_apostprocess_awaits_the_backends_async_path(service):
    backend = HTTPRerankServiceReranker(url=service.url)
    rerank = RankbridgeRerank(reranker=backend, top_n=2)
    out = await rerank.apostprocess_nodes(make_nodes(), query_str=QUERY)
    assert backend.async_calls == 1 and backend.sync_calls == 0
    expected = sorted(range(len(TEXTS)), key=lambda i: -overlap_scores(QUERY, TEXTS)[i])[:2]
    assert [n.node.node_id for n in out] == [f"n{i}" for i in expected]


async def test_concurrent_apostprocess_calls_overlap_on_one_event_loop(service):
    # The one timing check: 20 concurrent calls against an I/O-bound backend finish in
    # well under 20x one call (they would take ~20x through a blocking path).
    backend = HTTPRerankServiceReranker(url=service.url)
    rerank = RankbridgeRerank(reranker=backend)
    await rerank.apostprocess_nodes(make_nodes(), query_str=QUERY)  # warm-up
    started = time.perf_counter()
    single = await rerank.apostprocess_nodes(make_nodes(), query_str=QUERY)
    one_call = time.perf_counter() - started
    started = time.perf_counter()
    many = await asyncio.gather(*(rerank.apostprocess_nodes(make_nodes(), query_str=QUERY) for _ in range(20)))
    twenty_calls = time.perf_counter() - started
    assert backend.sync_calls == 0 and backend.async_calls == 22
    assert all([n.node.node_id for n in m] == [n.node.node_id for n in single] for m in many)
    assert twenty_calls < 8 * one_call, f"20 concurrent calls took {twenty_calls:.2f}s, one call {one_call:.2f}s"


@pytest.mark.slow
def test_image_nodes_are_ranked_by_a_real_page_backend(tmp_path):
    # ImageNodes in the three forms LlamaIndex stores (path, base64, Node.image_resource
    # bytes) go through ocr-page (RapidOCR + lexical): the page stating the answer wins.
    pytest.importorskip("rapidocr_onnxruntime")
    import io

    from llama_index.core.schema import MediaResource, Node
    from support.text_pages import ANSWER_PAGE, PAGE_LINES, QUERY, render_text_page

    encoded = []
    for lines in PAGE_LINES:
        buffer = io.BytesIO()
        render_text_page(lines).save(buffer, format="PNG")
        encoded.append(buffer.getvalue())
    (tmp_path / "p0.png").write_bytes(encoded[0])
    nodes = [
        ImageNode(image_path=str(tmp_path / "p0.png"), id_="p0"),
        ImageNode(image=base64.b64encode(encoded[1]).decode(), id_="p1"),
        Node(image_resource=MediaResource(data=encoded[2]), id_="p2"),
    ]
    rerank = RankbridgeRerank(
        reranker={"backend": "ocr-page", "inner": "lexical", "cache_dir": str(tmp_path / "ocr"), "show_progress_bar": False}
    )
    out = rerank.postprocess_nodes([NodeWithScore(node=n, score=0.5) for n in nodes], query_str=QUERY)
    assert out[0].node.node_id == f"p{ANSWER_PAGE}" and out[0].score > out[1].score
    assert {n.node.node_id for n in out} == {"p0", "p1", "p2"}
