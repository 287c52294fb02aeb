"""Metrics against hand-computed values (pytrec_eval underneath), reranked runs, report and chart."""

from __future__ import annotations

import math

import pytest

from rankbridge.integrations.evaluation.metrics import Configuration, EvaluationReport, evaluate, plot_report, rerank_run
from rankbridge.rerankers import Candidate, load_reranker

QRELS = {"q1": {"d1": 1, "d2": 2}, "q2": {"a": 1, "b": 1}, "q3": {"x": 1}}


def test_metrics_match_hand_computation():
    run = {
        "q1": ["d3", "d1", "d2"],  # relevant at ranks 2 (grade 1) and 3 (grade 2)
        "q2": [f"n{i}" for i in range(10)] + ["a"],  # one of two relevant, at rank 11
        # q3 is judged but has no run: it counts as zero
    }
    result = evaluate(run, QRELS, per_query=True)
    dcg = 1 / math.log2(3) + 2 / math.log2(4)  # trec_eval: linear gains
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    q1 = result["per_query"]["q1"]
    assert q1["ndcg@10"] == pytest.approx(dcg / idcg)
    assert q1["mrr@10"] == pytest.approx(0.5)
    assert q1["recall@100"] == pytest.approx(1.0)
    q2 = result["per_query"]["q2"]
    assert q2 == {"ndcg@10": 0.0, "mrr@10": 0.0, "recall@100": pytest.approx(0.5)}  # rank 11 is past the MRR cut
    assert result["per_query"]["q3"] == {"ndcg@10": 0.0, "mrr@10": 0.0, "recall@100": 0.0}
    assert result["queries"] == 3
    assert result["ndcg@10"] == pytest.approx(dcg / idcg / 3)
    assert result["mrr@10"] == pytest.approx(0.5 / 3)
    assert result["recall@100"] == pytest.approx(1.5 / 3)


def test_recall_is_cut_at_100_and_order_is_by_rank_not_id():
    run = {"q1": [f"n{i}" for i in range(100)] + ["d1", "d2"], "q2": ["b", "a"], "q3": ["x"]}
    result = evaluate(run, QRELS, per_query=True)["per_query"]
    assert result["q1"]["recall@100"] == 0.0
    assert result["q2"]["mrr@10"] == 1.0 and result["q3"]["ndcg@10"] == 1.0
    # candidates work as well as ids
    assert evaluate({"q3": [Candidate(text="t", id="x")]}, {"q3": {"x": 1}})["mrr@10"] == 1.0


def test_rerank_run_reorders_the_head_and_keeps_the_tail():
    texts = ["bananas are yellow", "paris is the capital of france", "coffee beans", "capital city france paris"]
    first = {"q": [Candidate(text=t, id=f"d{i}", score=10.0 - i) for i, t in enumerate(texts)]}
    out = rerank_run(load_reranker("lexical"), {"q": "capital of france"}, first, depth=2, show_progress=False)
    assert [c.id for c in out["q"]] == ["d1", "d0", "d2", "d3"]  # d3 would win if it were in the head
    with pytest.raises(ValueError, match="depth"):
        rerank_run(load_reranker("lexical"), {"q": "x"}, first, depth=0)


def test_report_table_json_and_bar_chart(tmp_path):
    report = EvaluationReport(dataset="toy", queries=3, limit=100)
    report.results[Configuration("hybrid").name] = {"ndcg@10": 0.7, "mrr@10": 0.65, "recall@100": 0.93}
    report.results[Configuration("hybrid", "lexical", 20).name] = {"ndcg@10": 0.6, "mrr@10": 0.55, "recall@100": 0.93}
    table = report.table()
    assert "hybrid + lexical @20" in table and "0.9300" in table
    assert report.to_dict()["results"]["hybrid"]["ndcg@10"] == 0.7
    path = tmp_path / "chart.png"
    plot_report(report, str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
