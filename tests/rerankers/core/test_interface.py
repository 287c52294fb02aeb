"""The contract of `Reranker`: input checks, error policy, fusion, rank_many, arank, serialization."""

from __future__ import annotations

import asyncio
import json
import logging

import numpy as np
import pytest

from rankbridge.rerankers import (
    BackendError,
    Candidate,
    CandidateError,
    RankedResults,
    Reranker,
    load_reranker,
)
from rankbridge.rerankers.core.base import Scores
from rankbridge.rerankers.core.calibration import dist_based, fuse, reciprocal_rank
from rankbridge.rerankers.core.config import RerankerConfig
from rankbridge.rerankers.core.errors import ConfigError


class FaultInjectingReranker(Reranker):
    """A hand-written fake, used only to inject failures a real backend cannot produce on demand."""

    name = "fault-injecting"
    config_class = RerankerConfig

    def __init__(self, *args, fault: str = "raise", **kwargs):
        super().__init__(*args, **kwargs)
        self.fault = fault
        self.calls = 0

    def _score_batch(self, queries, candidate_lists):
        return [self._score_query(q, c) for q, c in zip(queries, candidate_lists)]

    def _score_query(self, query, candidates):
        self.calls += 1
        n = len(candidates)
        if self.fault == "raise":
            raise RuntimeError("model server returned 503")
        if self.fault == "short":
            return Scores([1.0] * (n - 1), [0.5] * (n - 1))
        if self.fault == "nan":
            return Scores([float("nan")] * n, [0.5] * n)
        # "reverse": a working backend that prefers later candidates
        return Scores([float(i) for i in range(n)], [i / max(n - 1, 1) for i in range(n)])


def test_empty_input_returns_empty_without_calling_the_backend():
    reranker = FaultInjectingReranker(fault="raise")
    assert len(reranker.rank("q", [])) == 0
    assert [len(r) for r in reranker.rank_many(["q", "r"], [[], []])] == [0, 0]
    assert asyncio.run(reranker.arank("q", [])) == []
    assert reranker.calls == 0


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "3"])
def test_top_n_must_be_a_positive_int(bad):
    with pytest.raises(ValueError, match="top_n must be a positive int"):
        load_reranker("lexical").rank("q", ["a"], top_n=bad)


def test_bad_threshold_is_rejected():
    with pytest.raises(ValueError, match="score_threshold"):
        load_reranker("lexical").rank("q", ["a"], score_threshold="high")


def test_image_candidate_for_text_backend_names_its_index():
    cands = ["a", "b", Candidate(image=b"\x89PNG...")]
    with pytest.raises(CandidateError, match="candidate 2 is an image without text") as info:
        load_reranker("lexical").rank("q", cands)
    assert info.value.index == 2


def test_candidate_with_neither_text_nor_image_names_its_index():
    with pytest.raises(CandidateError, match="candidate 1 has neither text nor image"):
        load_reranker("identity").rank("q", ["a", Candidate(id="empty")])


def test_unsupported_candidate_type_names_its_index():
    with pytest.raises(CandidateError, match="candidate 1 is a int"):
        load_reranker("lexical").rank("q", ["a", 7])


def test_single_string_instead_of_list_is_rejected():
    with pytest.raises(TypeError, match="list of strings or Candidates"):
        load_reranker("lexical").rank("q", "just one string")


def test_on_error_raise_wraps_the_failure_in_one_clear_error():
    with pytest.raises(BackendError, match="backend 'fault-injecting' failed: RuntimeError: model server returned 503"):
        FaultInjectingReranker(fault="raise").rank("q", ["a", "b"])


def test_on_error_fallback_keeps_first_stage_order_and_says_why(caplog):
    cands = [Candidate(text="a", score=0.2), Candidate(text="b", score=0.9), Candidate(text="c", score=0.5)]
    reranker = FaultInjectingReranker(on_error="fallback", fault="raise")
    with caplog.at_level(logging.WARNING):
        results = reranker.rank("q", cands)
    assert results.indices == [1, 2, 0]
    assert all("503" in r.fallback_reason for r in results)
    assert results.fallback_reason.startswith("RuntimeError")
    assert [rec.levelname for rec in caplog.records].count("WARNING") == 1


def test_fallback_without_first_stage_scores_keeps_input_order():
    results = FaultInjectingReranker(on_error="fallback", fault="raise").rank("q", ["a", "b", "c"], top_n=2)
    assert results.indices == [0, 1]
    assert results.relevances == pytest.approx([1.0, 2 / 3])


def test_async_fallback_follows_the_same_policy():
    results = asyncio.run(FaultInjectingReranker(on_error="fallback", fault="raise").arank("q", ["a", "b"]))
    assert results.indices == [0, 1] and results.fallback_reason


@pytest.mark.parametrize("fault", ["short", "nan"])
def test_malformed_backend_output_is_caught(fault):
    with pytest.raises(BackendError):
        FaultInjectingReranker(fault=fault).rank("q", ["a", "b", "c"])


@pytest.mark.parametrize("mode", ["relevance", "relative_score", "dist_based_score", "reciprocal_rerank"])
def test_fusion_weight_zero_is_first_stage_order_and_one_is_reranker_order(mode):
    cands = [Candidate(text=t, score=s) for t, s in [("a", 3.0), ("b", 1.0), ("c", 2.0), ("d", 2.0)]]
    first = FaultInjectingReranker(fault="reverse", fuse_first_stage=0.0, fusion_mode=mode).rank("q", cands)
    assert first.indices == [0, 2, 3, 1]
    reranked = FaultInjectingReranker(fault="reverse", fuse_first_stage=1.0, fusion_mode=mode).rank("q", cands)
    assert reranked.indices == [3, 2, 1, 0]
    half = FaultInjectingReranker(fault="reverse", fuse_first_stage=0.5, fusion_mode=mode).rank("q", cands)
    assert all(0 <= r <= 1 for r in half.relevances) and sorted(half.indices) == [0, 1, 2, 3]


def test_fusion_modes_blend_the_scales_they_name():
    # "reverse" gives raw scores 0, 1, 2, 3 and relevance 0, 1/3, 2/3, 1; the first stage 3, 1, 2, 2.
    cands = [Candidate(text=t, score=s) for t, s in [("a", 3.0), ("b", 1.0), ("c", 2.0), ("d", 2.0)]]

    def fused(mode):
        results = FaultInjectingReranker(fault="reverse", fuse_first_stage=0.5, fusion_mode=mode).rank("q", cands)
        return {r.index: r.relevance for r in results}

    first_minmax = [1.0, 0.0, 0.5, 0.5]
    assert [fused("relative_score")[i] for i in range(4)] == pytest.approx([0.5 * (i / 3) + 0.5 * f for i, f in enumerate(first_minmax)])
    # Reciprocal ranks (k = 60): reranker ranks d, c, b, a; first stage a, c, d, b (ties in input order).
    rr = {0: 61 / 64 + 1.0, 1: 61 / 63 + 61 / 64, 2: 61 / 62 + 61 / 62, 3: 1.0 + 61 / 63}
    assert fused("reciprocal_rerank") == pytest.approx({i: v / 2 for i, v in rr.items()})
    # Distribution-based: each scaled to mean +- 3 standard deviations of its own list.
    raw, first = np.array([0.0, 1, 2, 3]), np.array([3.0, 1, 2, 2])
    z = lambda x: (x - x.mean() + 3 * x.std()) / (6 * x.std())  # noqa: E731
    assert [fused("dist_based_score")[i] for i in range(4)] == pytest.approx(list(0.5 * z(raw) + 0.5 * z(first)))


def test_fusion_scales_are_safe_at_the_edges():
    assert dist_based([5.0, 5.0]).tolist() == [1.0, 1.0]  # all equal: all 1, as min-max
    assert dist_based([-1e308, 0.0, 1e308]).round(4).tolist() == [0.2959, 0.5, 0.7041]  # as [-1, 0, 1], no overflow
    assert dist_based([]).size == 0 and reciprocal_rank([]).size == 0
    with pytest.raises(ValueError, match="position 1"):
        dist_based([0.0, float("nan")])
    assert reciprocal_rank([2.0, 2.0, 1.0]).tolist() == [1.0, 61 / 62, 61 / 63]  # ties in input order
    with pytest.raises(ValueError, match="fusion mode"):
        fuse(0.5, "rrf", np.zeros(2), np.zeros(2), np.zeros(2))


def test_unknown_fusion_mode_is_a_config_error():
    with pytest.raises(ConfigError, match="fusion_mode"):
        load_reranker({"backend": "lexical", "fuse_first_stage": 0.5, "fusion_mode": "rrf"})


def test_fusion_needs_first_stage_scores():
    with pytest.raises(CandidateError, match="candidate 1 has none"):
        FaultInjectingReranker(fault="reverse", fuse_first_stage=0.5).rank("q", [Candidate(text="a", score=1.0), "b"])


def test_rank_many_matches_rank_and_handles_empty_lists():
    reranker = load_reranker("lexical")
    queries = ["capital of france", "yellow fruit", "nothing"]
    lists = [["Paris is the capital of France.", "Bananas"], ["Bananas are yellow fruit.", "Paris"], []]
    many = reranker.rank_many(queries, lists, top_n=1)
    assert [m.indices for m in many] == [[0], [0], []]
    assert many[0] == reranker.rank(queries[0], lists[0], top_n=1)


def test_rank_many_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="2 queries but 1 candidate lists"):
        load_reranker("lexical").rank_many(["a", "b"], [["x"]])


def test_fifty_concurrent_aranks_on_one_loop():
    reranker = load_reranker("lexical")
    docs = [f"document {i} about {'france' if i % 3 == 0 else 'bananas'}" for i in range(200)]

    async def main():
        ticks = 0

        async def heartbeat():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        beat = asyncio.create_task(heartbeat())
        results = await asyncio.gather(*(reranker.arank(f"france {i}", docs, top_n=5) for i in range(50)))
        beat.cancel()
        return results, ticks

    results, ticks = asyncio.run(main())
    assert len(results) == 50
    assert all(r.indices == reranker.rank(f"france {i}", docs, top_n=5).indices for i, r in enumerate(results))
    assert ticks > 50  # the loop kept running while scoring happened off it


def test_results_round_trip_through_json():
    cands = [Candidate(text="Paris is the capital of France.", id="p", metadata={"src": "wiki"}, score=1.5), "bananas"]
    results = load_reranker("lexical").rank("capital of france", cands)
    data = json.loads(json.dumps(results.to_dict()))
    back = RankedResults.from_dict(data)
    assert back.ids == results.ids
    assert back.indices == results.indices
    assert back.relevances == pytest.approx(results.relevances)
    assert back[0].candidate.metadata == {"src": "wiki"}
    assert back.top(1).ids == ["p"]


def test_reranker_constructor_takes_fields_as_keywords():
    from rankbridge.rerankers import LexicalReranker

    reranker = LexicalReranker(k1=1.2, on_error="fallback")
    assert reranker.config.k1 == 1.2 and reranker.config.backend == "lexical"
    assert "k1=1.2" in repr(reranker)
