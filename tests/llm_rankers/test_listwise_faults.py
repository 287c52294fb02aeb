"""The listwise backend against injected faults: retries, timeouts, truncated JSON, chatty and
unusable answers, a server that is down, the error policy, concurrency caps, API keys.

The server here is tests/llm_rankers/vllm_server/fault_server.py, a hand-written FAKE used only for faults a real
server cannot produce on demand; the real vLLM server is exercised in tests/llm_rankers/vllm_server/.
"""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import sys
from pathlib import Path

import pytest

from rankbridge.llm_rankers.engines.openai_http import OpenAIChatClient
from rankbridge.llm_rankers.listwise.reranker import ListwiseReranker
from rankbridge.rerankers import BackendError, Candidate, ConfigError, MissingDependencyError, load_reranker

_spec = importlib.util.spec_from_file_location("rankbridge_fault_server", Path(__file__).parent / "vllm_server" / "fault_server.py")
fault_server = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = fault_server
_spec.loader.exec_module(fault_server)


@pytest.fixture
def server():
    with fault_server.FaultServer(hang_s=1.5) as srv:
        yield srv


def passages(values):
    return [f"Item number {v} of the list." for v in values]


def reranker_for(server, **fields):
    """A listwise reranker on the fake server with a fast-backoff client (retries take ms)."""
    config = {"backend": "listwise", "base_url": server.base_url, "model": "fake-model", "window_size": 4, "step": 2, **fields}
    client = OpenAIChatClient(
        server.base_url,
        "fake-model",
        api_key=config.get("api_key"),  # the client takes the plain string
        timeout=config.get("timeout", 5.0),
        max_retries=config.get("max_retries", 3),
        max_concurrency=config.get("max_concurrency", 8),
        backoff=0.01,
    )
    return ListwiseReranker(config, client=client)


# ---------------------------------------------------------------- config and registry


def test_listwise_loads_through_the_registry_and_estimates_cost():
    reranker = load_reranker({"backend": "listwise", "model": "m"})
    assert isinstance(reranker, ListwiseReranker)
    assert (reranker.config.window_size, reranker.config.step) == (20, 10)
    assert reranker.estimate_calls(100) == 9
    assert load_reranker({"backend": "listwise", "model": "m", "num_passes": 2}).estimate_calls(100) == 18


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"step": 30}, "step"),
        ({"window_size": 1}, "window_size"),
        ({"mode": "first_token", "window_size": 27, "step": 5}, "window_size"),
        ({"mode": "first_token", "prompt": "rankgpt", "window_size": 12}, "single-token"),
        ({"prompt": "no-such-prompt"}, "unknown prompt 'no-such-prompt'"),
        ({"engine": "tgi"}, "engine"),
        ({"mode": "pointwise"}, "mode"),
        ({"temperature": -1}, "temperature"),
        ({"max_retries": -1}, "max_retries"),
    ],
)
def test_bad_config_names_the_field(fields, message):
    with pytest.raises(ConfigError, match=message):
        load_reranker({"backend": "listwise", "model": "m", **fields})


def test_model_is_required():
    with pytest.raises(ConfigError, match="model"):
        load_reranker({"backend": "listwise"})


def test_api_key_is_not_shown_in_repr():
    reranker = load_reranker({"backend": "listwise", "model": "m", "api_key": "sk-secret"})
    assert "sk-secret" not in repr(reranker) and "sk-secret" not in repr(reranker.config)


def test_in_process_engine_without_vllm_is_a_one_line_missing_dependency_error():
    reranker = load_reranker({"backend": "listwise", "model": "m", "engine": "vllm"})
    if importlib.util.find_spec("vllm") is not None and hasattr(__import__("vllm"), "LLM"):
        pytest.skip("vllm is importable in this environment")
    with pytest.raises(MissingDependencyError, match="vllm"):
        reranker.rank("q", ["a", "b"])


# ---------------------------------------------------------------- the protocol, with good answers


def test_windows_are_applied_to_the_running_order_and_scores_are_rank_derived(server):
    values = [3, 41, 7, 0, 19, 25, 5, 33, 12, 8, 2, 30]
    reranker = reranker_for(server)
    results = reranker.rank("largest number", passages(values))
    n = len(values)
    assert sorted(results.indices) == list(range(n))
    # One back-to-front pass brings the largest item to the top; the fake ranks by number.
    assert values[results.indices[0]] == max(values)
    assert results.scores == [float(n - p) for p in range(n)]
    assert results.relevances == pytest.approx([1 - p / n for p in range(n)])
    stats = reranker.last_stats
    assert stats.calls == reranker.estimate_calls(n) == len(server.requests) == 5
    assert stats.unusable_windows == 0 and stats.repaired_windows == 0
    assert stats.prompt_tokens > 0 and stats.completion_tokens > 0
    body = server.requests[0].body
    assert body["model"] == "fake-model" and body["temperature"] == 0.0
    assert body["messages"][0]["role"] == "system"
    assert "[4] Item number 30" in body["messages"][1]["content"]  # the back window goes first


def test_duplicate_texts_stay_distinct_and_are_mapped_by_index(server):
    texts = ["Item number 5.", "Item number 9.", "Item number 5.", "Item number 1."]
    results = reranker_for(server).rank("q", [Candidate(text=t, id=f"doc{i}") for i, t in enumerate(texts)])
    assert results.ids == ["doc1", "doc0", "doc2", "doc3"]


def test_first_token_mode_orders_by_first_token_logprobs(server):
    values = [3, 41, 7, 0, 19, 25, 5, 33]
    reranker = reranker_for(server, mode="first_token")
    results = reranker.rank("largest number", passages(values))
    assert values[results.indices[0]] == 41
    body = server.requests[0].body
    assert body["max_tokens"] == 1 and body["logprobs"] is True and body["top_logprobs"] >= 4
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    assert body["messages"][-1] == {"role": "assistant", "content": "["}
    assert "[A] Item number" in body["messages"][1]["content"]
    assert reranker.last_stats.completion_tokens == reranker.last_stats.calls


def test_first_token_mode_without_logprobs_reads_the_answer_text(server):
    server.default = "no_logprobs"
    reranker = reranker_for(server, mode="first_token", window_size=3, step=3)
    results = reranker.rank("q", passages([1, 9, 5]))
    assert results.indices[0] == 1  # the one token "B" the fake sent as text


@pytest.mark.parametrize("fault", ["chatty", "think"])
def test_chatty_and_thinking_answers_are_parsed(server, fault):
    values = [4, 8, 15, 16, 23, 42]
    server.default = fault
    reranker = reranker_for(server)
    results = reranker.rank("q", passages(values))
    assert values[results.indices[0]] == 42
    assert reranker.last_stats.unusable_windows == 0
    if fault == "think":
        assert reranker.last_stats.repairs["think_removed"] == reranker.last_stats.calls


def test_an_unusable_answer_leaves_its_window_unchanged_and_is_counted_not_raised(server):
    values = [1, 2, 3, 4, 5, 6]
    server.script("garbage")  # the first (back) window; the others are answered
    reranker = reranker_for(server, on_error="raise")
    results = reranker.rank("q", passages(values))
    assert results.fallback_reason is None
    stats = reranker.last_stats
    assert stats.unusable_windows == 1 and stats.calls == 2
    # The back window (2..5) stayed as it was, so 4 and 5 never reached the front window.
    assert [values[i] for i in results.indices] == [4, 3, 2, 1, 5, 6]


# ---------------------------------------------------------------- retries and failures


@pytest.mark.parametrize("fault", ["503", "500", "429", "hang", "drop", "truncated"])
def test_transient_faults_are_retried(server, fault):
    server.script(fault, fault)
    # Only a hang needs a short timeout; the answer after the retries must still come back within
    # it on a loaded CI machine (else a third retry), so the hang is made to outlast it by far.
    if fault == "hang":
        server.hang_s = 5.0
    reranker = reranker_for(server, timeout=1.5 if fault == "hang" else 5.0, window_size=3, step=3)
    results = reranker.rank("q", passages([1, 9, 5]))
    assert results.indices == [1, 2, 0]
    assert reranker.last_stats.retries == 2
    assert len(server.requests) == 3


def test_a_rejected_request_is_not_retried(server):
    server.script("400")
    reranker = reranker_for(server, window_size=3, step=3)
    with pytest.raises(BackendError, match="HTTP 400.*maximum context length"):
        reranker.rank("q", passages([1, 9, 5]))
    assert len(server.requests) == 1


def test_a_server_that_stays_down_raises_one_clear_error(server):
    server.default = "503"
    reranker = reranker_for(server, max_retries=2, window_size=3, step=3)
    with pytest.raises(BackendError, match=r"failed after 3 attempt\(s\): HTTP 503"):
        reranker.rank("q", passages([1, 9, 5]))
    assert len(server.requests) == 3


def test_fallback_keeps_the_incoming_order_when_the_server_is_down(server):
    server.default = "503"
    reranker = reranker_for(server, max_retries=1, on_error="fallback")
    results = reranker.rank("q", passages([1, 9, 5, 7, 2]))
    assert results.indices == [0, 1, 2, 3, 4]
    assert "503" in results.fallback_reason
    scored = [Candidate(text=t, score=s) for t, s in zip(passages([1, 9, 5]), [0.1, 0.7, 0.3])]
    assert reranker.rank("q", scored).indices == [1, 2, 0]  # first-stage scores when given


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_connection_refused_with_each_policy_built_from_config_alone():
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    spec = {"backend": "listwise", "base_url": url, "model": "m", "max_retries": 1, "timeout": 2}
    with pytest.raises(BackendError, match="connection error"):
        load_reranker(spec).rank("q", ["a", "b", "c"])
    results = load_reranker({**spec, "on_error": "fallback"}).rank("q", ["a", "b", "c"])
    assert results.indices == [0, 1, 2] and "connection error" in results.fallback_reason


def test_a_failure_in_one_window_fails_the_query_not_half_of_it(server):
    server.script("ok", "503", "503")
    reranker = reranker_for(server, max_retries=1, on_error="fallback")
    results = reranker.rank("q", passages([1, 9, 5, 7, 2, 3]))
    assert results.indices == [0, 1, 2, 3, 4, 5]  # no partially reordered list


# ---------------------------------------------------------------- client behaviour


def test_api_key_is_sent_only_when_configured(server):
    reranker_for(server, api_key="sk-test", window_size=2, step=2).rank("q", ["a", "b"])
    reranker_for(server, window_size=2, step=2).rank("q", ["a", "b"])
    assert server.requests[0].headers.get("Authorization") == "Bearer sk-test"
    assert "Authorization" not in server.requests[1].headers


def test_concurrent_windows_respect_the_concurrency_cap(server):
    server.default = "hang"
    server.hang_s = 1.0  # long enough that two calls overlap on a loaded CI machine
    reranker = reranker_for(server, window_size=4, step=4, concurrent_windows=True, max_concurrency=2)
    results = reranker.rank("q", passages(range(20)))  # five windows that share no candidate
    assert sorted(results.indices) == list(range(20))
    assert server.peak_in_flight == 2
    assert reranker.last_stats.calls == reranker.estimate_calls(20)


def test_sequential_windows_send_one_call_at_a_time(server):
    server.default = "hang"
    server.hang_s = 0.05
    reranker_for(server, window_size=4, step=4, concurrent_windows=False).rank("q", passages(range(12)))
    assert server.peak_in_flight == 1
    reranker_for(server, window_size=4, step=2, concurrent_windows=True).rank("q", passages(range(12)))
    assert server.peak_in_flight == 1  # overlapping windows of one pass never run at once


def test_rank_many_runs_queries_concurrently_and_keeps_their_order(server):
    server.default = "hang"
    server.hang_s = 1.0  # long enough that all three calls overlap on a loaded CI machine
    reranker = reranker_for(server, window_size=3, step=3, max_concurrency=4)
    out = reranker.rank_many(["q1", "q2", "q3"], [passages([1, 5, 3]), passages([9, 2]), passages([4, 8, 6])])
    assert [r.query for r in out] == ["q1", "q2", "q3"]
    assert [r.indices for r in out] == [[1, 2, 0], [0, 1], [1, 2, 0]]
    assert server.peak_in_flight == 3
    assert reranker.stats.queries == 3 and reranker.stats.calls == 3


async def test_arank_and_rank_both_work_inside_a_running_event_loop(server):
    reranker = reranker_for(server, window_size=3, step=3)
    first = await reranker.arank("q", passages([1, 9, 5]))
    second = reranker.rank("q", passages([1, 9, 5]))  # sync call from inside a loop: a private loop runs it
    assert first.indices == second.indices == [1, 2, 0]
    await reranker.aclose()


def test_passages_are_cut_by_tokens_and_the_instructions_never(server):
    long_text = "Item number 7 " + "word " * 2000
    reranker = reranker_for(server, max_passage_tokens=12, window_size=2, step=2)
    reranker.rank("q", [long_text, "Item number 3."])
    user = server.requests[0].body["messages"][1]["content"]
    assert "word " * 5 in user and "word " * 60 not in user
    assert user.rstrip().endswith("do not say any word or explain.")


def test_a_prompt_that_cannot_fit_the_context_is_a_clear_error(server):
    reranker = reranker_for(server, context_length=200, window_size=2, step=2)
    with pytest.raises(BackendError, match="context_length=200"):
        reranker.rank("a very long query " * 100, ["a", "b"])
    assert server.requests == []


def test_close_releases_the_client_and_loop(server):
    reranker = reranker_for(server, window_size=2, step=2)
    reranker.rank("q", ["a", "b"])
    reranker.close()
    reranker.rank("q", ["a", "b"])  # usable again: a fresh loop and pool
    assert len(server.requests) == 2


def test_rank_is_repeatable_with_the_same_answers(server):
    reranker = reranker_for(server)
    a = reranker.rank("q", passages([5, 3, 8, 1, 9, 2]))
    b = asyncio.run(reranker.arank("q", passages([5, 3, 8, 1, 9, 2])))
    assert a.indices == b.indices
