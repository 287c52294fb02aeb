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


class BM25Stages:
    """A real first stage for `evaluate_configurations`: bm25s over a toy corpus (every mode is
    BM25 here), with the document text on each candidate as the Qdrant retriever returns it."""

    def __init__(self, corpus):
        from rankbridge.integrations.training import BM25Corpus

        self.corpus, self.index = corpus, BM25Corpus(corpus)

    def search_many(self, texts, limit=100, mode="hybrid", show_progress=True):
        return [
            [Candidate(id=c.id, score=c.score, text=self.corpus[c.id]) for c in hits]
            for hits in self.index.search_many(texts, limit=limit)
        ]


TOY_CORPUS = {
    "d1": "vitamin d supplements reduce the risk of hip fractures in older adults",
    "d2": "vitamin d and calcium in the diet",
    "d3": "fractures of the hip are common after falls",
    "d4": "a vector database stores embeddings for hybrid search",
    "d5": "hybrid search fuses dense and sparse retrieval results",
    "d6": "bananas are yellow and rich in potassium",
}
TOY_QUERIES = {"q1": "vitamin d hip fractures", "q2": "hybrid search vector database", "q3": "yellow bananas"}
TOY_QRELS = {"q1": {"d1": 1}, "q2": {"d5": 1, "d4": 1}, "q3": {"d6": 2}}


def test_evaluate_configurations_keeps_per_query_metrics_and_compares_with_the_first_stage():
    from rankbridge.integrations.evaluation.metrics import evaluate_configurations

    report = evaluate_configurations(
        BM25Stages(TOY_CORPUS), TOY_QUERIES, TOY_QRELS, [Configuration("hybrid", "lexical", 3)],
        limit=6, dataset="toy", show_progress=False, resamples=500, seed=1,
    )
    # the first stage was not asked for: it is added as the baseline row
    assert list(report.results) == ["hybrid", "hybrid + lexical @3"]
    assert set(report.per_query["hybrid"]) == set(TOY_QRELS)
    for name, rows in report.per_query.items():
        for m in ("ndcg@10", "mrr@10", "recall@100"):
            assert report.results[name][m] == pytest.approx(sum(r[m] for r in rows.values()) / 3)
    comparison = report.comparisons["hybrid + lexical @3"]
    assert comparison.baseline == "hybrid"
    d = comparison.differences["ndcg@10"]
    by_hand = [report.per_query["hybrid + lexical @3"][q]["ndcg@10"] - report.per_query["hybrid"][q]["ndcg@10"] for q in TOY_QRELS]
    assert d.mean == pytest.approx(sum(by_hand) / 3)
    assert d.wins + d.ties + d.losses == 3 and d.resamples == 500 and d.seed == 1
    assert comparison.differences["recall@100"].ties == 3  # reordering the top 3 of 6 keeps Recall@100
    table = report.comparison_table()
    assert "hybrid + lexical @3" in table and "95% CI" in table and "500 resamples" in table


def toy_report():
    report = EvaluationReport(dataset="toy", queries=4, limit=100)
    first = {"q1": 0.2, "q2": 0.5, "q3": 1.0, "q4": 0.0}
    reranked = {"q1": 0.6, "q2": 0.4, "q3": 1.0, "q4": 0.3}
    report.add("hybrid", {q: {"ndcg@10": v, "mrr@10": v / 2, "recall@100": 0.9} for q, v in first.items()})
    report.add("hybrid + x @100", {q: {"ndcg@10": v, "mrr@10": v / 2, "recall@100": 0.9} for q, v in reranked.items()})
    report.compare("hybrid + x @100", "hybrid", resamples=1000)
    return report


def test_per_query_metrics_and_intervals_survive_a_json_round_trip(tmp_path):
    import json

    report = toy_report()
    path = tmp_path / "eval.json"
    path.write_text(json.dumps(report.to_dict(), indent=2))
    data = json.loads(path.read_text())
    assert data["per_query"]["hybrid + x @100"]["q1"] == {"ndcg@10": 0.6, "mrr@10": 0.3, "recall@100": 0.9}
    ci = data["comparisons"]["hybrid + x @100"]["metrics"]["ndcg@10"]
    assert ci["baseline_mean"] == pytest.approx(0.425) and ci["mean"] == pytest.approx(0.15)
    assert {"low", "high", "wins", "ties", "losses", "resamples", "seed", "excludes_zero"} <= set(ci)
    back = EvaluationReport.from_dict(data)
    assert back == report
    assert back.comparison_table() == report.comparison_table()


def test_bar_chart_legend_covers_no_bar_and_differences_are_sorted(tmp_path):
    from rankbridge.integrations.evaluation.plots import bar_chart, differences_chart, plot_differences

    report = toy_report()
    report.add("hybrid + a reranker with a long name @100", report.per_query["hybrid"])
    fig = bar_chart(report)
    fig.canvas.draw()
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent()
    bars = [patch.get_window_extent() for patch in ax.patches]
    assert len(bars) == 3 * 3
    assert not any(legend.overlaps(bar) for bar in bars)
    assert not legend.overlaps(ax.get_window_extent())  # outside the axes altogether

    fig = differences_chart(report)
    (line,) = [ln for ln in fig.axes[0].get_lines() if len(ln.get_ydata()) == 4]
    assert list(line.get_ydata()) == pytest.approx([-0.1, 0.0, 0.3, 0.4])
    path = tmp_path / "diff.png"
    plot_differences(report, str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no reranked"):
        differences_chart(EvaluationReport(dataset="toy", queries=0, limit=100))


def test_a_json_spec_name_wraps_in_the_legend_instead_of_squeezing_the_axes():
    from rankbridge.integrations.evaluation.plots import bar_chart, differences_chart

    report = toy_report()
    spec = '{"backend": "cross-encoder", "model": "minilm-l6-ce-scifact", "runtime": "onnx", "fuse_first_stage": 0.5, "cache": "disk"}'
    name = f"hybrid + {spec} @100"
    report.add(name, report.per_query["hybrid + x @100"])
    report.compare(name, "hybrid", resamples=100)
    for fig in (bar_chart(report), differences_chart(report)):
        fig.canvas.draw()
        ax = fig.axes[0]
        legend = ax.get_legend()
        texts = [t.get_text() for t in legend.get_texts()]
        wrapped = next(t for t in texts if "minilm-l6-ce-scifact" in t)
        assert "\n" in wrapped and wrapped.replace("\n", " ").startswith(name)  # all of it, on several lines
        # the legend is about as wide as the axes, not several times wider
        assert legend.get_window_extent().width < 1.6 * fig.get_window_extent().width
        bars = [patch.get_window_extent() for patch in ax.patches]
        assert not any(legend.get_window_extent().overlaps(bar) for bar in bars)
