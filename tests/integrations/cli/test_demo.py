"""`rankbridge demo`: reranks with the shared trained model when it is there, says which model it
used when it is not, and ends with the lift and whether it is outside the noise."""

from __future__ import annotations

import pytest

from rankbridge.integrations.cli import demo
from rankbridge.integrations.cli import main as cli
from rankbridge.integrations.evaluation.stats import paired_bootstrap
from support.beir_files import write_beir


def test_the_shared_trained_model_is_used_on_onnx_fused_at_one_half(model_dir):
    choice = demo.choose_demo_reranker(model_dir=model_dir)
    assert choice.model == "minilm-l6-ce-scifact" and choice.trained and choice.note is None
    assert choice.spec == {
        "backend": "cross-encoder", "model": str(model_dir / "minilm-l6-ce-scifact"),
        "runtime": "onnx", "fuse_first_stage": 0.5, "fusion_mode": "relative_score",
    }
    assert choice.describe("top 30") == "minilm-l6-ce-scifact (onnx, fuse_first_stage 0.5, relative_score, top 30)"


def test_without_the_trained_model_it_says_which_model_reranks(model_dir, tmp_path):
    (tmp_path / "minilm-l6-ce-weak").symlink_to(model_dir / "minilm-l6-ce-weak")
    choice = demo.choose_demo_reranker(model_dir=tmp_path)
    assert choice.model == "minilm-l6-ce-weak" and not choice.trained
    assert choice.spec["model"] == str(tmp_path / "minilm-l6-ce-weak") and choice.spec["fuse_first_stage"] == 0.5
    assert choice.spec["fusion_mode"] == "relative_score"
    assert "minilm-l6-ce-scifact is not in" in choice.note and str(tmp_path) in choice.note
    assert "reranking with minilm-l6-ce-weak instead" in choice.note and "WEAK" in choice.note

    empty = tmp_path / "empty"
    empty.mkdir()
    choice = demo.choose_demo_reranker(model_dir=empty)
    assert choice.spec == "lexical" and "reranking with lexical" in choice.note
    assert demo.choose_demo_reranker("identity", model_dir=empty).note is None  # a given spec is used as is


def test_model_folders_follow_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("RANKBRIDGE_MODEL_DIR", str(tmp_path))
    assert demo.model_folders() == [tmp_path]
    monkeypatch.delenv("RANKBRIDGE_MODEL_DIR")
    monkeypatch.setenv("RANKBRIDGE_DATA_DIR", str(tmp_path / "data"))
    assert demo.model_folders() == [tmp_path / "models"]  # ../models beside the data


def test_closing_lines_say_the_lift_and_whether_it_is_outside_the_noise():
    choice = demo.DemoChoice(label="x", spec="x", model="minilm-l6-ce-scifact")
    first = [0.1 * (i % 5) for i in range(30)]
    clear = {m: paired_bootstrap(first, [v + 0.1 for v in first]) for m in ("ndcg@10", "mrr@10")}
    lines = demo.closing_lines(clear, 30, 30, choice)
    assert lines[0].startswith("lift in nDCG@10: +0.1000 (95% CI +0.1000 to +0.1000), MRR@10: +0.1000")
    assert "10,000 resamples" in lines[0] and lines[1] == "nDCG@10 per query: 30 better, 0 equal, 0 worse."
    assert "excludes 0" in lines[2] and "a lift outside the noise" in lines[2]
    noisy = {m: paired_bootstrap(first, [v + (0.2 if i % 2 else -0.19) for i, v in enumerate(first)]) for m in ("ndcg@10", "mrr@10")}
    lines = demo.closing_lines(noisy, 30, 30, demo.DemoChoice(label="w", spec="w", model="minilm-l6-ce-weak", note="n"))
    assert "includes 0" in lines[2] and "cannot be told from noise" in lines[2]
    assert any("deliberately weak" in line for line in lines) and lines[-1] == "note: n"


@pytest.mark.slow  # the real dense embedder and the trained cross-encoder on ONNX Runtime
def test_demo_reranks_with_the_trained_model_and_ends_with_the_interval(tmp_path, capsys):
    beir = write_beir(tmp_path / "beir")
    code = cli.main(["demo", "--beir", str(beir), "--store", str(tmp_path / "store"), "--queries", "2", "--depth", "2"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "minilm-l6-ce-scifact (onnx, fuse_first_stage 0.5, relative_score) reranks the top 2" in out
    assert "note:" not in out
    row = next(line for line in out.splitlines() if line.startswith("reranked minilm-l6-ce-scifact (onnx, fuse_first_stage 0.5, relative_score, top 2)"))
    assert len(row.split()) >= 4
    assert "lift in nDCG@10:" in out and "95% CI" in out and ("excludes 0" in out or "includes 0" in out)


@pytest.mark.slow
def test_demo_without_the_trained_model_names_the_one_it_used(tmp_path, capsys, monkeypatch, model_dir):
    models = tmp_path / "models"
    models.mkdir()
    (models / "minilm-l6-ce-weak").symlink_to(model_dir / "minilm-l6-ce-weak")
    monkeypatch.setenv("RANKBRIDGE_MODEL_DIR", str(models))
    beir = write_beir(tmp_path / "beir")
    code = cli.main(["demo", "--beir", str(beir), "--store", str(tmp_path / "store"), "--queries", "1", "--depth", "2"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.startswith("note: the trained model minilm-l6-ce-scifact is not in")
    assert "minilm-l6-ce-weak (onnx, fuse_first_stage 0.5, relative_score) reranks the top 2" in out
    assert "deliberately weak test model" in out
