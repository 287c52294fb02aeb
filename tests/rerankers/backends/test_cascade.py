"""`cascade`: the ordering rule on hand-built cases, stage failures, shared batches, async stages,
the stages' score cache, and `budget_ms`.

The hand-built cases use real backends whose scores are known by construction: `identity` ranks by
the first-stage score we give each candidate, `lexical` (BM25) gives 0 to a text without a query
term, so ties are made on purpose.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from rankbridge.rerankers import Candidate, ConfigError, load_reranker
from rankbridge.rerankers.backends.cascade import CascadeResult, CascadeResults
from rankbridge.rerankers.runtime.throughput import ThroughputModel, throughput_model, throughput_path
from support.http_rerank_service import HTTPRerankServiceReranker, rerank_service

QUERY = "alpha beta"
# (text, first-stage score). identity order: 1, 5, 3, 0, 4, 2.
ITEMS = [("gamma", 5.0), ("alpha", 9.0), ("alpha beta", 1.0), ("delta", 7.0), ("alpha", 3.0), ("beta beta alpha", 8.0)]


def candidates(items=ITEMS) -> list[Candidate]:
    return [Candidate(text=t, score=s, id=f"d{i}") for i, (t, s) in enumerate(items)]


def cascade(stages, **kwargs):
    return load_reranker({"backend": "cascade", "stages": stages, **kwargs})


@pytest.fixture
def cache_root(tmp_path, monkeypatch):
    monkeypatch.setenv("RANKBRIDGE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def weak_model(model_dir) -> str:
    return str(model_dir / "minilm-l6-ce-weak")


# ---------------------------------------------------------------------- the ordering rule


def test_order_is_last_stage_then_each_earlier_stages_drops_latest_first():
    cands = candidates()
    three = cascade([{"reranker": "identity", "keep": 4}, {"reranker": "lexical", "keep": 2}, {"reranker": "identity"}])
    results = three.rank(QUERY, cands)
    # identity keeps 1,5,3,0 (drops 4,2); lexical: 5 > 1 > (3 = 0, both 0: tie keeps identity's order),
    # keeps 5,1 (drops 3,0); identity ranks 1 (9.0) before 5 (8.0).
    assert results.indices == [1, 5, 3, 0, 4, 2]
    assert [r.stage for r in results] == [2, 2, 1, 1, 0, 0]
    assert isinstance(results, CascadeResults) and all(isinstance(r, CascadeResult) for r in results)
    assert results.depths == [6, 4, 2] and results.depth == 2
    assert results.num_candidates == 6
    # relevance and stage_score are those of the last stage that scored each candidate
    first = load_reranker("identity").rank(QUERY, cands)
    second = load_reranker("lexical").rank(QUERY, [cands[i] for i in (1, 5, 3, 0)])
    third = load_reranker("identity").rank(QUERY, [cands[1], cands[5]])
    expected = {
        **{r.index: (r.relevance, r.score) for r in first if r.index in (4, 2)},
        **{(1, 5, 3, 0)[r.index]: (r.relevance, r.score) for r in second if (1, 5, 3, 0)[r.index] in (3, 0)},
        **{(1, 5)[r.index]: (r.relevance, r.score) for r in third},
    }
    assert {r.index: (r.relevance, r.stage_score) for r in results} == expected
    assert results.scores == [6.0, 5.0, 4.0, 3.0, 2.0, 1.0]  # rank-derived: n - position
    assert [r.rank for r in results] == list(range(6))


def test_ties_in_a_later_stage_keep_the_earlier_stages_order():
    # No candidate has a query term: lexical scores all 0; identity orders by first-stage score.
    items = [("x", 1.0), ("y", 3.0), ("z", 2.0), ("w", 4.0)]
    results = cascade([{"reranker": "identity", "keep": 3}, {"reranker": "lexical"}]).rank(QUERY, candidates(items))
    assert results.indices == [3, 1, 2, 0]
    assert [r.stage for r in results] == [1, 1, 1, 0]


def test_duplicates_stay_distinct():
    items = [("alpha", None), ("alpha", None), ("beta", None), ("alpha", None)]
    cands = [Candidate(text=t) for t, _ in items]
    results = cascade([{"reranker": "lexical", "keep": 3}, {"reranker": "lexical", "keep": 2}, {"reranker": "lexical"}]).rank(
        QUERY, cands
    )
    assert sorted(results.indices) == [0, 1, 2, 3]
    assert len(results) == 4 and len({id(r.candidate) for r in results}) == 4
    assert [r.candidate for r in results] == [cands[i] for i in results.indices]


def test_keep_larger_than_the_list_passes_everything_on():
    cands = candidates()
    results = cascade([{"reranker": "identity", "keep": 100}, {"reranker": "lexical"}]).rank(QUERY, cands)
    assert results.depths == [6, 6]
    assert all(r.stage == 1 for r in results)
    identity_order = (1, 5, 3, 0, 4, 2)
    lexical = load_reranker("lexical").rank(QUERY, [cands[i] for i in identity_order])
    assert results.indices == [identity_order[i] for i in lexical.indices]


def test_an_empty_survivor_set_ends_the_cascade_early():
    cands = candidates()
    two = cascade([{"reranker": "lexical", "keep": 3, "min_relevance": 0.99}, {"reranker": "identity"}])
    calls = []
    real = two.stages[1].rank_many
    two.stages[1].rank_many = lambda *a, **k: calls.append(a) or real(*a, **k)
    results = two.rank(QUERY, cands)
    assert calls == []  # the second stage had nothing to rank
    assert results.depths == [6, 0]
    assert results.indices == load_reranker("lexical").rank(QUERY, cands).indices
    assert all(r.stage == 0 for r in results)


def test_min_relevance_drops_within_keep():
    cands = candidates()
    results = cascade([{"reranker": "lexical", "keep": 5, "min_relevance": 0.01}, {"reranker": "identity"}]).rank(QUERY, cands)
    # lexical gives a relevance above 0 only to texts with a query term: 1, 2, 4, 5
    assert results.depths == [6, 4]
    assert sorted(results.indices[:4]) == [1, 2, 4, 5]
    assert results.indices[:4] == [1, 5, 4, 2]  # identity order of the survivors
    assert [r.stage for r in results] == [1, 1, 1, 1, 0, 0]


def test_top_n_and_score_threshold_cut_the_cascade_result():
    cands = candidates()
    three = cascade([{"reranker": "identity", "keep": 4}, {"reranker": "lexical", "keep": 2}, {"reranker": "identity"}])
    top = three.rank(QUERY, cands, top_n=3)
    assert top.indices == [1, 5, 3] and top.depths == [6, 4, 2]
    # relevance: 1 -> 1.0, 5 -> 0.5 (last identity over 2); 3, 0 -> 0.0 (lexical); 4 -> 1/3, 2 -> 1/6 (first identity over 6)
    assert three.rank(QUERY, cands, score_threshold=0.3).indices == [1, 5, 4]


def test_every_candidate_is_accounted_for_on_random_cases():
    import random

    rng = random.Random(0)
    words = ["alpha", "beta", "gamma", "delta"]
    for _ in range(60):
        n = rng.randint(1, 12)
        items = [(" ".join(rng.choices(words, k=rng.randint(1, 3))), float(rng.randint(0, 3))) for _ in range(n)]
        keeps = [rng.randint(1, 14), rng.randint(1, 14)]
        three = cascade([{"reranker": "identity", "keep": keeps[0]}, {"reranker": "lexical", "keep": keeps[1]}, {"reranker": "identity"}])
        results = three.rank(QUERY, candidates(items))
        assert sorted(results.indices) == list(range(n))
        d0 = n
        d1 = min(keeps[0], d0)
        d2 = min(keeps[1], d1)
        assert results.depths == [d0, d1, d2]
        stages = [r.stage for r in results]
        assert stages == sorted(stages, reverse=True)  # later stages' groups come first
        assert stages.count(2) == d2 and stages.count(1) == d1 - d2 and stages.count(0) == d0 - d1


def test_rank_many_shares_each_stages_batches_across_queries():
    two = cascade([{"reranker": "lexical", "keep": 2}, {"reranker": "identity"}])
    sizes: list[list[list[int]]] = [[], []]
    for k, stage in enumerate(two.stages):
        real = stage._score_batch
        stage._score_batch = lambda qs, ls, real=real, k=k: sizes[k].append([len(c) for c in ls]) or real(qs, ls)
    queries = ["alpha", "beta", "gamma"]
    lists = [candidates(), candidates()[:3], candidates()[2:]]
    many = two.rank_many(queries, lists)
    assert sizes == [[[6, 3, 4]], [[2, 2, 2]]]  # one call per stage, every query in it
    fresh = cascade([{"reranker": "lexical", "keep": 2}, {"reranker": "identity"}])
    for q, c, got in zip(queries, lists, many):
        one = fresh.rank(q, c)
        assert got.indices == one.indices and got.depths == one.depths
        assert [r.stage for r in got] == [r.stage for r in one]


def test_empty_input_and_config_errors():
    two = cascade([{"reranker": "lexical", "keep": 2}, {"reranker": "identity"}])
    assert len(two.rank(QUERY, [])) == 0
    with pytest.raises(ConfigError, match="stage 0 needs `keep`"):
        cascade([{"reranker": "lexical"}, {"reranker": "identity"}])
    with pytest.raises(ConfigError, match="give it no `keep`"):
        cascade([{"reranker": "lexical", "keep": 3}, {"reranker": "identity", "keep": 2}])
    with pytest.raises(ConfigError, match=r"stages\.1\.reranker.*unknown backend 'no-such'"):
        cascade([{"reranker": "lexical", "keep": 3}, {"reranker": "no-such"}])
    with pytest.raises(ConfigError, match=r"stages\.1\.reranker.*unknown field 'kk1'"):
        cascade([{"reranker": "lexical", "keep": 3}, {"reranker": {"backend": "lexical", "kk1": 2}}])
    with pytest.raises(ConfigError, match="keep"):
        cascade([{"reranker": "lexical", "keep": 0}, {"reranker": "identity"}])
    with pytest.raises(ConfigError, match="stages"):
        cascade([])


def test_a_candidate_every_stage_cannot_score_is_refused_up_front():
    from PIL import Image

    from rankbridge.rerankers import CandidateError

    two = cascade([{"reranker": "identity", "keep": 2}, {"reranker": "lexical"}])
    with pytest.raises(CandidateError, match="candidate 1 is an image without text"):
        two.rank(QUERY, [Candidate(text="alpha"), Candidate(image=Image.new("RGB", (2, 2)))])


def test_results_serialize_with_stage_and_depths():
    results = cascade([{"reranker": "identity", "keep": 2}, {"reranker": "lexical"}]).rank(QUERY, candidates())
    data = json.loads(json.dumps(results.to_dict()))
    assert data["depths"] == [6, 2]
    assert [r["stage"] for r in data["results"]] == [r.stage for r in results]
    assert results.top(3).depths == [6, 2] and len(results.top(3)) == 3


# ---------------------------------------------------------------------- failures


def closed_cross_encoder(model: str, **fields):
    """A real cross-encoder after `close()`: every scoring call fails with a BackendError."""
    reranker = load_reranker({"backend": "cross-encoder", "model": model, **fields})
    reranker.close()
    return reranker


def test_a_stage_failing_under_fallback_is_skipped_and_says_why(weak_model, caplog):
    cands = candidates()
    broken = closed_cross_encoder(weak_model, on_error="fallback")
    two = cascade([{"reranker": "lexical", "keep": 3}, {"reranker": broken}])
    results = two.rank(QUERY, cands)
    lexical = load_reranker("lexical").rank(QUERY, cands)
    assert results.indices == lexical.indices  # the skipped stage leaves the lexical order
    assert [r.stage for r in results] == [0] * 6
    assert results.relevances == lexical.relevances
    reasons = [r.fallback_reason for r in results]
    assert all("closed" in reason for reason in reasons[:3]) and reasons[3:] == [None] * 3
    assert results.fallback_reason is not None
    assert "on_error=fallback" in caplog.text


def test_a_failing_first_stage_under_fallback_keeps_the_first_stage_order(weak_model):
    cands = candidates()
    broken = closed_cross_encoder(weak_model, on_error="fallback")
    results = cascade([{"reranker": broken, "keep": 3}, {"reranker": "lexical"}]).rank(QUERY, cands)
    # fallback = first-stage order by Candidate.score: 1, 5, 3 go on; lexical ranks them 5, 1, 3
    assert results.indices == [5, 1, 3, 0, 4, 2]
    assert [r.stage for r in results] == [1, 1, 1, 0, 0, 0]
    assert [r.fallback_reason is not None for r in results] == [False, False, False, True, True, True]


def test_a_stage_failing_under_raise_fails_the_cascade_by_its_own_policy(weak_model):
    from rankbridge.rerankers import BackendError

    cands = candidates()
    broken = closed_cross_encoder(weak_model)
    with pytest.raises(BackendError, match="closed"):
        cascade([{"reranker": "lexical", "keep": 3}, {"reranker": broken}]).rank(QUERY, cands)
    results = cascade([{"reranker": "lexical", "keep": 3}, {"reranker": broken}], on_error="fallback").rank(QUERY, cands)
    assert results.indices == [1, 5, 3, 0, 4, 2]  # the cascade's own fallback: first-stage order
    assert all(r.stage is None and "closed" in r.fallback_reason for r in results)


# ---------------------------------------------------------------------- async


def test_arank_awaits_native_async_stages_and_matches_rank():
    with rerank_service(delay_s=0.01) as service:
        remote = HTTPRerankServiceReranker(url=service.url)
        two = cascade([{"reranker": "identity", "keep": 4}, {"reranker": remote}])
        cands = candidates()

        async def run():
            try:
                return await two.arank(QUERY, cands)
            finally:
                await remote.aclose()

        got = asyncio.run(run())
        assert remote.async_calls == 1 and remote.sync_calls == 0
        want = two.rank(QUERY, cands)
        assert remote.sync_calls == 1
        assert got.indices == want.indices and [r.stage for r in got] == [r.stage for r in want]
        assert got.depths == want.depths == [6, 4]


def test_arank_runs_in_process_stages_off_the_loop():
    two = cascade([{"reranker": "identity", "keep": 4}, {"reranker": "lexical"}])
    cands = candidates()
    assert asyncio.run(two.arank(QUERY, cands)) == two.rank(QUERY, cands)


# ---------------------------------------------------------------------- the score cache


def test_cascade_cache_is_every_stages_default(weak_model, cache_root):
    two = cascade(
        [{"reranker": "lexical", "keep": 3}, {"reranker": {"backend": "cross-encoder", "model": weak_model}}], cache="memory"
    )
    assert [s.config.cache for s in two.stages] == ["memory", "memory"]
    cands = candidates()
    first = two.rank(QUERY, cands)
    assert two.cache_stats().hits == 0 and two.cache_stats().misses == 6 + 3
    calls = []
    real = two.stages[1]._score_batch
    two.stages[1]._score_batch = lambda qs, ls: calls.append(ls) or real(qs, ls)
    again = two.rank(QUERY, cands)
    assert calls == [] and again == first
    assert two.cache_stats().hits == 9
    own = cascade([{"reranker": {"backend": "lexical", "cache": "none"}, "keep": 3}, {"reranker": "identity"}], cache="disk")
    assert [s.config.cache for s in own.stages] == ["none", "disk"]


# ---------------------------------------------------------------------- budget_ms


def fake_throughput(per_pair_s: float, overhead_s: float = 0.0) -> ThroughputModel:
    """An injected measurement (timing here would make the test depend on the machine)."""
    return ThroughputModel(lengths=[8, 512], seconds_per_pair=[per_pair_s, per_pair_s * 64], overhead_s=overhead_s)


def test_budget_picks_a_smaller_depth_for_a_tighter_budget(cache_root):
    cands = [Candidate(text="alpha beta " * 1, score=float(10 - i)) for i in range(10)]
    depths = {}
    for budget in (1000.0, 6.0, 2.5, 0.5):
        two = cascade([{"reranker": "identity", "keep": 8}, {"reranker": "lexical"}], budget_ms=budget)
        two.set_throughput(fake_throughput(0.001, overhead_s=0.0005))
        results = two.rank(QUERY, cands)
        depths[budget] = results.depth
        assert [r.stage for r in results].count(1) == results.depth
        assert sorted(results.indices) == list(range(10))
        assert results.indices[results.depth :] == list(range(results.depth, 10))  # identity order below the cut
    # pair length ("alpha beta" + query) / 4 + 3 chars/4 units, about 1 ms a pair plus 0.5 ms a call
    assert depths == {1000.0: 8, 6.0: 5, 2.5: 2, 0.5: 0}


def test_budget_counts_longer_documents_as_dearer(cache_root):
    short = [Candidate(text="alpha", score=float(10 - i)) for i in range(10)]
    long = [Candidate(text="alpha beta gamma delta " * 40, score=float(10 - i)) for i in range(10)]
    two = cascade([{"reranker": "identity", "keep": 10}, {"reranker": "lexical"}], budget_ms=20.0)
    two.set_throughput(fake_throughput(0.001))
    assert two.rank(QUERY, long).depth < two.rank(QUERY, short).depth


def test_budget_reads_the_cached_measurement_keyed_by_identity_and_machine(cache_root, monkeypatch):
    two = cascade([{"reranker": "identity", "keep": 8}, {"reranker": "lexical"}], budget_ms=3.0)
    path = throughput_path(two.stages[-1])
    assert path.parent == cache_root / "throughput"
    path.write_text(json.dumps({"model": fake_throughput(0.001).to_dict()}))
    import rankbridge.rerankers.runtime.throughput as throughput

    monkeypatch.setattr(throughput, "measure_throughput", lambda *a, **k: pytest.fail("measured although cached"))
    results = two.rank(QUERY, [Candidate(text="alpha", score=float(-i)) for i in range(8)])
    assert results.depths == [8, 3]  # 1 ms a pair, no call overhead
    other = load_reranker({"backend": "lexical", "k1": 1.2})
    assert throughput_path(other) != path  # another scoring identity, another measurement


def test_throughput_is_measured_once_then_read_from_the_cache(cache_root, monkeypatch):
    lexical = load_reranker("lexical")
    model = throughput_model(lexical, lengths=(16, 64), pairs=4, repeats=1)
    assert model.unit == "chars/4" and len(model.lengths) == 2
    assert all(s > 0 for s in model.seconds_per_pair)
    assert throughput_path(lexical).is_file()
    import rankbridge.rerankers.runtime.throughput as throughput

    monkeypatch.setattr(throughput, "measure_throughput", lambda *a, **k: pytest.fail("measured twice"))
    assert throughput_model(lexical) == model


def test_throughput_lengths_are_the_models_tokens(weak_model, cache_root):
    from rankbridge.rerankers.runtime.throughput import pair_lengths

    ce = load_reranker({"backend": "cross-encoder", "model": weak_model, "max_length": 64})
    lengths = pair_lengths(ce, "capital of france", ["Paris.", "word " * 500])
    assert lengths[0] < 16 and lengths[1] == 64


def test_budget_on_a_page_image_last_stage_is_refused():
    with pytest.raises(ConfigError, match="budget_ms"):
        cascade([{"reranker": "lexical", "keep": 3}, {"reranker": {"backend": "ocr-page", "disk_cache": False}}], budget_ms=10)


def test_a_noisy_measurement_never_makes_longer_pairs_cheaper():
    noisy = ThroughputModel(lengths=[32, 128, 256], seconds_per_pair=[0.004, 0.002, 0.008])
    costs = noisy.pair_seconds([32, 64, 128, 256, 512])
    assert list(costs) == sorted(costs)
    assert costs[1] == pytest.approx(0.004) and costs[-1] == pytest.approx(0.016)
