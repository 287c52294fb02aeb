"""The model card (`README.md`) of a folder `rankbridge train` wrote.

Written from `rankbridge_training.json` alone, so it says only what was recorded: the base model
by the name the user gave, the training data, the exact command, the training phases, the fusion
weight chosen on the validation split, and the before/after table with confidence intervals when
the model was evaluated. No absolute path appears in it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from rankbridge.integrations.evaluation.stats import PairedDifference
from rankbridge.integrations.training.validation import fusion_verdict

logger = logging.getLogger(__name__)

CARD_NAME = "README.md"


def _architecture(folder: Path) -> str:
    path = folder / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return "unknown (no readable config.json)"
    arch = ", ".join(config.get("architectures") or [config.get("model_type", "unknown")])
    parts = [f"`{arch}`"]
    for key, label in (("num_hidden_layers", "layers"), ("hidden_size", "hidden")):
        if key in config:
            parts.append(f"{config[key]} {label}")
    labels = config.get("num_labels", len(config.get("id2label") or {}))
    if labels:
        parts.append("1 label (a logit)" if labels == 1 else f"{labels} labels")
    return ", ".join(parts)


def _fusion_evidence(fusion: dict[str, Any]) -> list[str]:
    """The chosen fusion's paired interval against the first stage on the validation queries and
    the best point's against the untuned choice (records from before these existed: nothing)."""
    lines = []
    if fusion.get("vs_first_stage"):
        diff = PairedDifference.from_dict(fusion["vs_first_stage"])
        lines.append(f"On the validation queries, against the first stage: {diff.describe('nDCG@10')}.")
    best, prior, lead = fusion.get("best") or {}, fusion.get("prior") or {}, fusion.get("best_vs_prior")
    if lead:
        diff = PairedDifference.from_dict(lead)
        taken = (best.get("mode"), best.get("weight")) == (fusion.get("mode"), fusion.get("weight"))
        lines.append(
            f"The best point (`fuse_first_stage: {best.get('weight')}`, `fusion_mode: {best.get('mode')}`) against the "
            f"untuned choice ({prior.get('weight')} in {prior.get('mode')}): {diff.describe('nDCG@10')}; "
            f"{fusion_verdict(diff, taken)}."
        )
    return ["", " ".join(lines)] if lines else []


def _metrics_table(evaluation: dict[str, Any]) -> list[str]:
    metrics = evaluation.get("metrics") or ["ndcg@10", "mrr@10", "recall@100"]
    lines = ["| configuration | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
    for name, values in evaluation.get("results", {}).items():
        lines.append(f"| {name} | " + " | ".join(f"{values[m]:.4f}" for m in metrics) + " |")
    comparisons = evaluation.get("comparisons") or {}
    if comparisons:
        lines += [
            "",
            "Paired difference against the first stage, per query (95% bootstrap CI over queries):",
            "",
            "| configuration | nDCG@10 diff | 95% CI | wins / ties / losses | outside the noise |",
            "|---|---|---|---|---|",
        ]
        for name, comparison in comparisons.items():
            d = comparison["metrics"]["ndcg@10"]
            lines.append(
                f"| {name} | {d['mean']:+.4f} | [{d['low']:+.4f}, {d['high']:+.4f}] | "
                f"{d['wins']} / {d['ties']} / {d['losses']} | {'yes' if d['excludes_zero'] else 'no'} |"
            )
    return lines


def model_card(folder: Path, record: dict[str, Any]) -> str:
    """The card's Markdown text."""
    name = folder.name
    base = record.get("base_model") or "unknown"
    data = record.get("data") or {}
    lines = [
        f"# {name}: a cross-encoder reranker trained with `rankbridge train`",
        "",
        f"- Base model: `{base}` (the encoder; the one-logit classification head starts random when the base is a bi-encoder).",
        f"- Architecture: {_architecture(folder)}; trained at {record.get('max_length')} tokens. "
        "A sigmoid of the logit gives a relevance in [0, 1].",
    ]
    if data:
        dataset = data.get("dataset", "unknown")
        parts = [f"{data.get('train_queries', '?')} queries of the `{data.get('split', 'train')}` split"]
        if data.get("positive_rows") is not None:
            parts.append(f"{data['positive_rows']} (query, positive) rows")
        if data.get("pseudo_queries"):
            parts.append(f"{data['pseudo_queries']} title->body pseudo-queries from the corpus")
        lines.append(f"- Training data: {dataset}, " + ", ".join(parts) + ".")
        extras = []
        if data.get("first_stage"):
            extras.append(f"hard negatives mined with the `{data['first_stage']}` first stage (depth {data.get('depth')}, "
                          f"{data.get('negatives')} per row, ranks above {data.get('skip_top', 0)} skipped, {data.get('negative_sampling', 'top')} sampling)")
        if data.get("random_negatives"):
            extras.append(f"{data['random_negatives']} random negatives per row")
        if data.get("min_positive_grade", 1) != 1:
            extras.append(f"positives are judged grade >= {data['min_positive_grade']}")
        if data.get("positives_per_query"):
            extras.append(f"at most {data['positives_per_query']} positives per query")
        if data.get("validation_queries"):
            uses = "fusion weight" if record.get("checkpoint_choice") == "last" else "checkpoint choice, early stopping, fusion weight"
            extras.append(f"{data['validation_queries']} training queries held out as a validation split "
                          f"({uses}); never trained on")
        if extras:
            joined = "; ".join(extras)
            lines.append("- " + joined[:1].upper() + joined[1:] + ".")
        if data.get("eval_split"):
            lines.append(f"- Never trained on the `{data['eval_split']}` split it is evaluated on below.")
    command = record.get("command")
    if command:
        lines += ["", "Made with:", "", "```bash", command, "```"]
    phases = record.get("phases") or {}
    listwise = record.get("loss") == "listwise"
    if phases:
        unit = "groups" if listwise else "pairs"
        lines += ["", f"| phase | epochs | {unit} | steps | minutes | best validation nDCG@10 | kept step | stopped early |",
                  "|---|---|---|---|---|---|---|---|"]
        seconds = record.get("phase_seconds") or {}
        for phase, info in phases.items():
            best = info.get("best_metric")
            lines.append(
                f"| {phase} | {info.get('epochs', '')} | {info.get('pairs', '')} | {info.get('steps', '')} | "
                f"{seconds.get(phase, 0) / 60:.1f} | {'' if best is None else f'{best:.4f}'} | {info.get('kept_step', '')} | "
                f"{'yes' if info.get('stopped_early') else 'no'} |"
            )
    lines += [
        "",
        ("Listwise loss (each positive against its own negatives and "
         f"{record.get('in_batch_negatives')} in-batch negatives in one softmax), batch {record.get('batch_size')} groups"
         if listwise else f"Binary cross-entropy, batch {record.get('batch_size')} pairs")
        + f", encoder learning rate {record.get('learning_rate')}, head learning rate "
        f"{record.get('head_learning_rate')}, seed {record.get('seed')}{', bf16 autocast' if record.get('bf16') else ''}; "
        f"{record.get('train_seconds', 0) / 60:.1f} min in the trainer. `rankbridge_training.json` holds every setting.",
    ]
    fusion = record.get("fusion")
    weight = fusion.get("weight") if fusion else None
    mode = (fusion.get("mode") or "relevance") if fusion else "relevance"
    if fusion:
        table = ", ".join(f"{w}: {v:.4f}" for w, v in fusion.get("ndcg@10", {}).items())
        others = [m for m in fusion.get("ndcg@10_by_mode", {}) if m != mode]
        lines += [
            "",
            f"Fusion chosen on the validation split ({fusion.get('queries')} queries, top {fusion.get('depth')}): "
            f"`fuse_first_stage: {weight}`, `fusion_mode: {mode}` (validation nDCG@10 per weight in that mode: {table}; "
            f"first stage alone {fusion.get('first_stage_ndcg@10', 0):.4f}"
            + (f"; also tried: {', '.join(others)}, in `rankbridge_training.json`" if others else "") + ").",
        ]
        lines += _fusion_evidence(fusion)
    evaluation = record.get("evaluation")
    long_documents = data.get("eval_long_documents") or "truncate"
    lines += ["", "## Before / after"]
    if evaluation:
        lines += [
            "",
            f"{evaluation.get('dataset', '')} `{evaluation.get('split', 'test')}` split, {evaluation.get('queries')} queries, "
            f"first stage top {evaluation.get('limit')}, the model reranks the top {evaluation.get('depth', '?')}"
            + (f" (`long_documents: {long_documents}`)" if long_documents != "truncate" else "") + ":",
            "",
            *_metrics_table(evaluation),
        ]
    else:
        lines += ["", "Not evaluated yet (`--eval-split none`): run `rankbridge eval` with this model to get the table."]
    use = f'{{"backend": "cross-encoder", "model": "{name}"' + (
        f', "long_documents": "{long_documents}"' if long_documents != "truncate" else "") + (
        f', "fuse_first_stage": {weight}' if weight is not None else "") + (
        f', "fusion_mode": "{mode}"' if weight is not None and mode != "relevance" else "") + "}"
    lines += [
        "",
        "## Where it helps, and where it does not",
        "",
        f"This is an in-domain model: it learned the queries and documents of {data.get('dataset', 'its training set')}. "
        "Expect a lift on that domain only. On other domains a small model trained like this usually costs "
        "nDCG@10, a little when fused with the first stage and more on its own: measure it on your data "
        "(`rankbridge eval --reranker ...`, which reports the paired difference with its confidence interval) "
        "before relying on it, and prefer it fused.",
        "",
        "## Use",
        "",
        "```python",
        "from rankbridge.rerankers import load_reranker",
        f"reranker = load_reranker({use})",
        "```",
        "",
        "The folder's model files are everything except `checkpoints/` (resume state), `mined.jsonl` and the "
        "evaluation JSON, which publishing may leave out.",
    ]
    return "\n".join(lines) + "\n"


def write_model_card(folder: str | Path, record: dict[str, Any] | None = None) -> Path:
    """Write `README.md` into `folder` from `record` (default: its `rankbridge_training.json`)."""
    root = Path(folder)
    if record is None:
        record = json.loads((root / "rankbridge_training.json").read_text())
    path = root / CARD_NAME
    path.write_text(model_card(root, record), encoding="utf-8")
    return path


__all__ = ["CARD_NAME", "model_card", "write_model_card"]
