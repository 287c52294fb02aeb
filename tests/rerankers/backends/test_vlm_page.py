"""`vlm-page` on tiny random-init Qwen2-VL and Idefics3 models built from the real architectures.

No VLM weights exist offline, so each model is built from its real transformers config with a
few small layers and a tokenizer with the family's special tokens and chat template
(tests/support/tiny_models.py).
These tests assert plumbing only: batching by token budget, padding invariance, shapes,
min/max pixel resizing, relevance in [0, 1], LoRA loading. Never quality: the weights are random.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rankbridge.rerankers import Candidate, CandidateError, ConfigError, load_reranker
from support.tiny_models import tiny_model

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
Image = pytest.importorskip("PIL.Image")

pytestmark = pytest.mark.slow

@pytest.fixture(scope="session")
def tiny_vlms() -> dict[str, Path]:
    return {"qwen2_vl": tiny_model("qwen2_vl"), "idefics3": tiny_model("idefics3")}


@pytest.fixture(scope="session")
def qwen_reranker(tiny_vlms):
    return load_reranker({"backend": "vlm-page", "model": str(tiny_vlms["qwen2_vl"]), "show_progress_bar": False})


def page(width: int, height: int, seed: int):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8), "RGB")


MIXED = [page(300, 200, 1), page(120, 400, 2), page(64, 64, 3), page(500, 500, 4), page(90, 180, 5)]


@pytest.mark.parametrize("family", ["qwen2_vl", "idefics3"])
def test_mixed_size_pages_score_the_same_batched_or_alone(tiny_vlms, family):
    reranker = load_reranker({"backend": "vlm-page", "model": str(tiny_vlms[family]), "show_progress_bar": False})
    candidates = [Candidate(image=img, id=f"p{i}") for i, img in enumerate(MIXED)]
    together = reranker.rank("what is the capital of France?", candidates)
    batches = reranker.stats.batches
    assert len(batches) == 1 and batches[0][0] == len(MIXED)  # one padded batch of five
    alone = {c.id: reranker.rank("what is the capital of France?", [c])[0].score for c in candidates}
    assert sorted(together.ids) == sorted(alone)
    for r in together:
        assert r.score == pytest.approx(alone[r.id], abs=1e-4)
        assert 0.0 <= r.relevance <= 1.0
        assert r.relevance == pytest.approx(1 / (1 + np.exp(-r.score)), abs=1e-9)
    assert together.scores == sorted(together.scores, reverse=True)


@pytest.mark.parametrize("family", ["qwen2_vl", "idefics3"])
def test_estimated_pair_lengths_match_the_processor(tiny_vlms, family):
    reranker = load_reranker({"backend": "vlm-page", "model": str(tiny_vlms[family]), "show_progress_bar": False})
    text = reranker._prompt_text("a query")
    images = [reranker._prepare_image(i, Candidate(image=img)) for i, img in enumerate(MIXED)]
    estimated = reranker.pair_lengths([text] * len(images), images)
    actual = [int(reranker.processor(text=[text], images=[img], return_tensors="pt")["input_ids"].shape[1]) for img in images]
    assert estimated == actual
    assert len(set(actual)) > 1  # the sizes really differ, so the budget test below means something


def test_token_budget_splits_batches_without_changing_scores(tiny_vlms, qwen_reranker):
    candidates = [Candidate(image=img) for img in MIXED]
    reference = qwen_reranker.rank("revenue in 2023", candidates)
    budget = 400
    small = load_reranker(
        {"backend": "vlm-page", "model": str(tiny_vlms["qwen2_vl"]), "max_tokens_per_batch": budget, "show_progress_bar": False}
    )
    result = small.rank("revenue in 2023", candidates)
    assert len(small.stats.batches) > 1
    for rows, length in small.stats.batches:
        assert rows * length <= budget or rows == 1
    assert sum(rows for rows, _ in small.stats.batches) == len(MIXED)
    assert result.ids == reference.ids
    np.testing.assert_allclose(result.scores, reference.scores, atol=1e-4)


def test_batch_size_caps_rows(tiny_vlms):
    reranker = load_reranker(
        {"backend": "vlm-page", "model": str(tiny_vlms["qwen2_vl"]), "batch_size": 2, "show_progress_bar": False}
    )
    reranker.rank("q", [Candidate(image=img) for img in MIXED])
    assert [rows for rows, _ in reranker.stats.batches] == [2, 2, 1]


def test_max_pixels_bounds_image_tokens(tiny_vlms):
    big = page(1600, 1200, 7)
    tokens = {}
    for max_pixels in (28 * 28 * 16, 28 * 28 * 64):
        reranker = load_reranker(
            {"backend": "vlm-page", "model": str(tiny_vlms["qwen2_vl"]), "max_pixels": max_pixels, "show_progress_bar": False}
        )
        enc = reranker.processor(text=[reranker._prompt_text("q")], images=[big], return_tensors="pt")
        grid = enc["image_grid_thw"][0]
        pixels = int(grid[1] * grid[2]) * 14 * 14
        assert pixels <= max_pixels
        tokens[max_pixels] = int(grid.prod()) // 4
    assert tokens[28 * 28 * 16] <= 16 < tokens[28 * 28 * 64] <= 64


def test_min_pixels_scales_small_pages_up_for_tiled_models(tiny_vlms):
    reranker = load_reranker(
        {"backend": "vlm-page", "model": str(tiny_vlms["idefics3"]), "min_pixels": 100 * 100, "max_pixels": None, "show_progress_bar": False}
    )
    assert reranker._pixel_limits_in_processor is False
    small = reranker._prepare_image(0, Candidate(image=page(20, 40, 1)))
    assert small.size[0] * small.size[1] >= 100 * 100
    assert abs(small.size[1] / small.size[0] - 2.0) < 0.1  # aspect ratio kept


def test_rank_many_shares_batches_across_queries(qwen_reranker):
    lists = [[Candidate(image=img) for img in MIXED[:3]], [Candidate(image=img) for img in MIXED[3:]]]
    many = qwen_reranker.rank_many(["first query", "second query"], lists)
    assert sum(rows for rows, _ in qwen_reranker.stats.batches) == 5
    assert [len(r) for r in many] == [3, 2]
    single = qwen_reranker.rank("second query", lists[1])
    np.testing.assert_allclose(sorted(many[1].scores), sorted(single.scores), atol=1e-4)


def test_image_forms_give_identical_scores(tmp_path, qwen_reranker):
    import base64
    import io

    img = page(200, 150, 11)
    path = tmp_path / "p.png"
    img.save(path)
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    b64 = base64.b64encode(buffer.getvalue()).decode()
    forms = [img, str(path), path, buffer.getvalue(), b64, "data:image/png;base64," + b64]
    scores = qwen_reranker.rank("q", [Candidate(image=f) for f in forms]).scores
    assert max(scores) - min(scores) < 1e-5


def test_text_candidate_is_rejected_with_its_index(qwen_reranker):
    with pytest.raises(CandidateError, match="candidate 1 has no image"):
        qwen_reranker.rank("q", [Candidate(image=MIXED[0]), "just text"])


def test_unreadable_image_names_its_index(qwen_reranker):
    with pytest.raises(CandidateError, match="candidate 1: cannot read its image"):
        qwen_reranker.rank("q", [Candidate(image=MIXED[0]), Candidate(image=b"not an image")])


def test_answer_tokens_must_be_single_tokens(tiny_vlms):
    with pytest.raises(ConfigError, match="yes_token.*single token"):
        load_reranker({"backend": "vlm-page", "model": str(tiny_vlms["qwen2_vl"]), "yes_token": "Absolutely yes"})


def test_renamed_knobs_say_their_new_names():
    with pytest.raises(ConfigError, match="'max_batch_tokens' is now called 'max_tokens_per_batch'"):
        load_reranker({"backend": "vlm-page", "model": "x", "max_batch_tokens": 100})
    with pytest.raises(ConfigError, match="'progress' is now called 'show_progress_bar'"):
        load_reranker({"backend": "vlm-page", "model": "x", "progress": False})


def test_config_errors_name_the_field(tiny_vlms):
    with pytest.raises(ConfigError, match="prompt"):
        load_reranker({"backend": "vlm-page", "model": str(tiny_vlms["qwen2_vl"]), "prompt": "no placeholder"})
    with pytest.raises(ConfigError, match="min_pixels"):
        load_reranker({"backend": "vlm-page", "model": "x", "min_pixels": 10, "max_pixels": 5})
    with pytest.raises(ConfigError, match="field 'model'"):
        load_reranker({"backend": "vlm-page", "model": str(tiny_vlms["qwen2_vl"] / "missing")})


def test_lora_adapter_saved_from_a_tiny_model_loads_and_changes_scores(tiny_vlms, tmp_path, qwen_reranker):
    peft = pytest.importorskip("peft")
    base = transformers.AutoModelForImageTextToText.from_pretrained(tiny_vlms["qwen2_vl"])
    lora = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    torch.manual_seed(1)
    adapted = peft.get_peft_model(base, lora)
    adapter_dir = tmp_path / "adapter"
    adapted.save_pretrained(adapter_dir)
    assert (adapter_dir / "adapter_config.json").is_file()

    reranker = load_reranker(
        {"backend": "vlm-page", "model": str(tiny_vlms["qwen2_vl"]), "adapter": str(adapter_dir), "show_progress_bar": False}
    )
    candidates = [Candidate(image=img) for img in MIXED[:3]]
    with_adapter = reranker.rank("q", candidates)
    without = qwen_reranker.rank("q", candidates)
    by_index = {r.index: r.score for r in without}
    assert any(abs(r.score - by_index[r.index]) > 1e-4 for r in with_adapter)

    # The merged adapter scores what the unmerged peft model computes.
    enc = reranker.processor(text=[reranker._prompt_text("q")], images=[MIXED[0]], return_tensors="pt")
    with torch.no_grad():
        logits = adapted.eval()(**enc).logits[0, -1]
    expected = float(logits[reranker.yes_id] - logits[reranker.no_id])
    first = next(r for r in with_adapter if r.index == 0)
    assert first.score == pytest.approx(expected, abs=1e-4)


def test_a_missing_adapter_is_a_config_error(tiny_vlms):
    with pytest.raises(ConfigError, match="field 'adapter'"):
        load_reranker({"backend": "vlm-page", "model": str(tiny_vlms["qwen2_vl"]), "adapter": "/no/such/adapter"})


def test_real_vidore_pages_run_through(qwen_reranker, data_dir):
    """Plumbing on real page images (ViDoRe arXivQA sample): every page is scored, nothing lost."""
    folder = data_dir / "pages" / "vidore-arxivqa-sample"
    rows = [json.loads(line) for line in (folder / "corpus.jsonl").read_text().splitlines() if line.strip()][:4]
    candidates = [Candidate(image=str(folder / r["image_path"]), id=r["_id"]) for r in rows]
    result = qwen_reranker.rank("surface density trend", candidates, top_n=3)
    assert len(result) == 3 and result.num_candidates == 4
    assert set(result.ids) <= {r["_id"] for r in rows}
