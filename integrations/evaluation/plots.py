"""Charts of an `EvaluationReport` (matplotlib, Agg backend, PNG).

- `plot_report`: grouped bars, one group per metric, one bar per configuration; the legend sits
  below the axes, never over a bar.
- `plot_differences`: for each reranked configuration, its per-query differences against its
  first stage, sorted: where the reranker loses (left, below 0), ties (flat at 0) and wins
  (right, above 0), with the mean and its bootstrap interval in the legend.
"""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING, Any

import numpy as np

from rankbridge.rerankers.core.errors import require

if TYPE_CHECKING:
    from rankbridge.integrations.evaluation.metrics import EvaluationReport

_EXTRA = "qdrant"
# Legend lines wider than this wrap, so a long name (a JSON reranker spec) widens the figure no
# further than the axes and never squeezes them.
_LEGEND_WIDTH = 100


def _wrapped(label: str) -> str:
    return "\n".join(textwrap.wrap(label, _LEGEND_WIDTH, break_on_hyphens=False)) or label


def _lines(labels: list[str]) -> int:
    return sum(label.count("\n") + 1 for label in labels)


def _pyplot() -> Any:
    matplotlib = require("matplotlib", extra=_EXTRA)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def bar_chart(report: EvaluationReport) -> Any:
    """The grouped bar chart as a matplotlib Figure (the caller closes it)."""
    from rankbridge.integrations.evaluation.metrics import METRICS

    plt = _pyplot()
    names = list(report.results)
    labels = [_wrapped(name) for name in names]
    x = np.arange(len(METRICS))
    width = 0.8 / max(len(names), 1)
    # Room below the axes for the legend: one line per legend line.
    fig, ax = plt.subplots(figsize=(2.2 + 1.6 * len(METRICS), 3.6 + 0.25 * _lines(labels)))
    for i, (name, label) in enumerate(zip(names, labels)):
        values = [report.results[name][m] for m in METRICS]
        bars = ax.bar(x + (i - (len(names) - 1) / 2) * width, values, width, label=label)
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.set_xticks(x, METRICS)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score")
    ax.set_title(f"{report.dataset}: {report.queries} queries, first stage top {report.limit}")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=1, frameon=False)
    fig.tight_layout()
    return fig


def plot_report(report: EvaluationReport, path: str) -> None:
    """Write `bar_chart(report)` as a PNG at `path`."""
    plt = _pyplot()
    fig = bar_chart(report)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def sorted_differences(report: EvaluationReport, name: str, metric: str = "ndcg@10") -> np.ndarray:
    """Per-query `metric` of configuration `name` minus its first stage's, ascending."""
    comparison = report.comparisons[name]
    mine, base = report.per_query[name], report.per_query[comparison.baseline]
    return np.sort(np.array([mine[q][metric] - base[q][metric] for q in base], dtype=np.float64))


def differences_chart(report: EvaluationReport, metric: str = "ndcg@10") -> Any:
    """The sorted per-query differences as a matplotlib Figure (the caller closes it): one step
    line per reranked configuration, x = the query's rank among the sorted differences."""
    plt = _pyplot()
    names = list(report.comparisons)
    if not names:
        raise ValueError("the report has no reranked configuration to plot differences of")
    labels = []
    for name in names:
        d = report.comparisons[name].differences[metric]
        labels.append(_wrapped(
            f"{name}: mean {d.mean:+.3f} [{d.confidence:.0%} CI {d.low:+.3f}, {d.high:+.3f}], "
            f"{d.wins} wins / {d.ties} ties / {d.losses} losses"
        ))
    fig, ax = plt.subplots(figsize=(7.5, 3.8 + 0.25 * _lines(labels)))
    for name, label in zip(names, labels):
        diffs = sorted_differences(report, name, metric)
        ax.step(np.arange(1, diffs.size + 1), diffs, where="mid", label=label)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("queries, sorted by difference")
    ax.set_ylabel(f"{metric} difference vs first stage")
    ax.set_title(f"{report.dataset}: per-query {metric}, reranked minus first stage ({report.queries} queries)")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=1, frameon=False)
    fig.tight_layout()
    return fig


def plot_differences(report: EvaluationReport, path: str, metric: str = "ndcg@10") -> None:
    """Write `differences_chart(report, metric)` as a PNG at `path`."""
    plt = _pyplot()
    fig = differences_chart(report, metric)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


__all__ = ["bar_chart", "differences_chart", "plot_differences", "plot_report", "sorted_differences"]
