"""`vlm-page` families against re-implementations of each model's reference code, on tiny random
models of the real architectures (tests/support/tiny_models.py): Qwen2-VL for MonoQwen2-VL (its
model card's code), Qwen3-VL for Qwen3-VL-Reranker, a Qwen2-VL backbone with a `score.*` head for jina-reranker-m0, and a
checkpoint whose classes exist only in its own code for `trust_remote_code`.

References:
- Qwen3-VL-Reranker (`Qwen3VLReranker` of the Qwen3-VL-Embedding repository):
  `format_mm_instruction` (system line; `<Instruct>: ` + instruction, `<Query>:`, the query text,
  `\\n<Document>:`, the image), the processor's chat template with the generation prompt, left
  padding, `lm.model(...).last_hidden_state[:, -1]` through a Linear of w_yes - w_no, sigmoid.
- jina-reranker-m0 (`modeling.py`): `JinaVLForRanking(Qwen2VLForConditionalGeneration)` with an
  identity LM head and a Linear-ReLU-Linear `score` head; `formatting_prompts_func(doc_type="image")`,
  the processor at min/max pixels 3136/602112, left padding, the score token (100) appended,
  `sigmoid(score(hidden_states[-1][:, -1]) - 2.65)`.
The processors are built with `load_page_processor` (AutoProcessor would build a video processor,
which needs torchvision, absent here); the images are given at sizes the processors keep as is.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from rankbridge.rerankers import Candidate, ConfigError, load_reranker
from rankbridge.rerankers.backends.vlm_page import QWEN3_VL_SYSTEM, QWEN3_VL_TASK, load_page_processor
from support.tiny_models import JINA_SCORE_TOKEN_ID, tiny_model

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
Image = pytest.importorskip("PIL.Image")

pytestmark = pytest.mark.slow

QUERY = "what was the revenue in 2023?"


def page(width: int, height: int, seed: int):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8), "RGB")


# Multiples of 32 px (Qwen3-VL) and 28 px (Qwen2-VL), inside both presets' pixel limits.
QWEN3_PAGES = [page(w, h, i) for i, (w, h) in enumerate([(64, 96), (128, 64), (160, 160), (96, 32), (64, 64),
                                                         (224, 96), (32, 128), (128, 128)])]
JINA_PAGES = [page(w, h, i) for i, (w, h) in enumerate([(56, 84), (112, 56), (140, 140), (84, 56), (56, 56),
                                                        (196, 84), (56, 112), (112, 112)])]


def _scores(reranker, pages):
    result = reranker.rank(QUERY, [Candidate(image=p) for p in pages])
    by_index = {r.index: r for r in result}
    return (np.array([by_index[i].score for i in range(len(pages))]),
            np.array([by_index[i].relevance for i in range(len(pages))]))


# ---------------------------------------------------------------------- MonoQwen2-VL


def monoqwen2_vl_reference(folder, query, pages):
    """The lightonai/MonoQwen2-VL-v0.1 model card's code, one page at a time: the image then the
    prompt in one user turn, the chat template with the generation prompt, softmax over the last
    token's logits of "True" and "False", P(True)."""
    model = transformers.Qwen2VLForConditionalGeneration.from_pretrained(folder).eval()
    processor = load_page_processor(str(folder), model.config)
    prompt = ("Assert the relevance of the previous image document to the following query, "
              "answer True or False. The query is: {query}").format(query=query)
    true_id = processor.tokenizer.convert_tokens_to_ids("True")
    false_id = processor.tokenizer.convert_tokens_to_ids("False")
    probs = []
    for image in pages:
        messages = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": prompt}]}]
        text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        inputs = processor(text=text, images=image, return_tensors="pt")
        with torch.no_grad():
            logits = model(**inputs).logits[:, -1, :]
        probs.append(torch.softmax(logits[:, [true_id, false_id]], dim=-1)[0, 0].item())
    return text, np.array(probs)


def test_monoqwen2_vl_scores_equal_the_model_cards_code():
    reranker = load_reranker({"backend": "vlm-page", "model": str(tiny_model("qwen2_vl")), "preset": "monoqwen2-vl",
                              "show_progress_bar": False})
    text, expected = monoqwen2_vl_reference(tiny_model("qwen2_vl"), QUERY, JINA_PAGES)
    assert reranker._prompt_text(QUERY) == text  # the same chat-templated text, image placeholder first
    raw, relevance = _scores(reranker, JINA_PAGES)  # batched: the card scores one page at a time
    np.testing.assert_allclose(relevance, expected, atol=1e-4)
    assert np.ptp(raw) > 0.01  # random weights still score pages apart: the parity is not vacuous


# ---------------------------------------------------------------------- Qwen3-VL-Reranker


def qwen3_vl_reference(folder, query, pages, instruction=QWEN3_VL_TASK):
    """Qwen3VLReranker.process for an image document and a text query: P(yes) per page."""
    lm = transformers.Qwen3VLForConditionalGeneration.from_pretrained(folder).eval()
    model = lm.model
    processor = load_page_processor(str(folder), lm.config)
    processor.tokenizer.padding_side = "left"
    vocab = processor.tokenizer.get_vocab()
    weight = lm.lm_head.weight.data
    score_linear = torch.nn.Linear(weight.shape[1], 1, bias=False)
    with torch.no_grad():
        score_linear.weight[0] = weight[vocab["yes"]] - weight[vocab["no"]]

    def format_mm_content(text, image, prefix):
        content = [{"type": "text", "text": prefix}]
        if not text and image is None:
            content.append({"type": "text", "text": "NULL"})
            return content
        if image is not None:
            content.append({"type": "image", "image": image})
        if text:
            content.append({"type": "text", "text": text})
        return content

    def format_mm_instruction(query_text, doc_image):
        contents = [{"type": "text", "text": "<Instruct>: " + instruction}]
        contents.extend(format_mm_content(query_text, None, prefix="<Query>:"))
        contents.extend(format_mm_content(None, doc_image, prefix="\n<Document>:"))
        return [
            {"role": "system", "content": [{"type": "text", "text": QWEN3_VL_SYSTEM}]},
            {"role": "user", "content": contents},
        ]

    pairs = [format_mm_instruction(query, p) for p in pages]
    text = [processor.apply_chat_template(pair, tokenize=False, add_generation_prompt=True) for pair in pairs]
    inputs = processor(text=text, images=list(pages), padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**inputs).last_hidden_state[:, -1]
        return text, torch.sigmoid(score_linear(hidden)).squeeze(-1).double().numpy()


@pytest.fixture(scope="module")
def qwen3_vl():
    return load_reranker({"backend": "vlm-page", "model": str(tiny_model("qwen3_vl")), "preset": "qwen3-vl-reranker",
                          "show_progress_bar": False})


def test_qwen3_vl_reranker_prompt_and_scores_equal_the_reference(qwen3_vl):
    text, expected = qwen3_vl_reference(tiny_model("qwen3_vl"), QUERY, QWEN3_PAGES)
    assert qwen3_vl._prompt_text(QUERY) == text[0]
    assert "<Instruct>: " + QWEN3_VL_TASK + "<Query>:" + QUERY + "\n<Document>:<|vision_start|>" in text[0]
    raw, relevance = _scores(qwen3_vl, QWEN3_PAGES)
    np.testing.assert_allclose(relevance, expected, atol=1e-4)
    assert np.ptp(raw) > 0.1  # random weights still score pages apart: the parity is not vacuous


def test_qwen3_vl_page_scores_the_same_alone_and_in_a_batch_of_eight(qwen3_vl):
    together, _ = _scores(qwen3_vl, QWEN3_PAGES)
    assert qwen3_vl.stats.batches[0][0] == 8
    for i in (0, 5, 6):
        alone, _ = _scores(qwen3_vl, [QWEN3_PAGES[i]])
        assert together[i] == pytest.approx(alone[0], abs=1e-4)


def test_qwen3_vl_without_its_system_line_scores_far_apart(qwen3_vl):
    variant = load_reranker({"backend": "vlm-page", "model": str(tiny_model("qwen3_vl")), "preset": "qwen3-vl-reranker",
                             "system": None})
    a, _ = _scores(qwen3_vl, QWEN3_PAGES[:3])
    b, _ = _scores(variant, QWEN3_PAGES[:3])
    assert np.max(np.abs(a - b)) > 1e-2


def test_qwen3_vl_preset_pixel_limits_and_estimated_lengths(qwen3_vl):
    size = qwen3_vl.processor.image_processor.size
    limits = size if isinstance(size, dict) else size.__dict__
    assert limits["shortest_edge"] == 4 * 32 * 32 and limits["longest_edge"] == 1800 * 32 * 32
    text = qwen3_vl._prompt_text("q")
    actual = [int(qwen3_vl.processor(text=[text], images=[p], return_tensors="pt")["input_ids"].shape[1]) for p in QWEN3_PAGES]
    assert qwen3_vl.pair_lengths([text] * len(QWEN3_PAGES), QWEN3_PAGES) == actual


def test_a_task_set_in_the_config_replaces_the_presets():
    reranker = load_reranker({"backend": "vlm-page", "model": str(tiny_model("qwen3_vl")), "preset": "qwen3-vl-reranker",
                              "task": "Find the page with the chart"})
    text, expected = qwen3_vl_reference(tiny_model("qwen3_vl"), QUERY, QWEN3_PAGES[:2], instruction="Find the page with the chart")
    assert reranker._prompt_text(QUERY) == text[0]
    _, relevance = _scores(reranker, QWEN3_PAGES[:2])
    np.testing.assert_allclose(relevance, expected, atol=1e-4)


# ---------------------------------------------------------------------- jina-reranker-m0


class JinaVLForRanking(transformers.Qwen2VLForConditionalGeneration):
    """jina-reranker-m0's model class, re-implemented from its modeling.py."""

    def __init__(self, config):
        config.tie_word_embeddings = False
        super().__init__(config)
        self.padding_side = "left"
        self.num_labels = 1
        self.lm_head = torch.nn.Identity()
        hidden = config.text_config.hidden_size
        self.score = torch.nn.Sequential(torch.nn.Linear(hidden, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))
        self.post_init()
        self.score_token_id = 100

    def forward(self, *args, **kwargs):
        outputs = super().forward(*args, use_cache=False, output_hidden_states=True, **kwargs)
        hidden_states = outputs.hidden_states[-1]
        pooled_logits = self.score(hidden_states[:, -1]).squeeze(-1)
        return torch.sigmoid(pooled_logits - 2.65)


JINA_KEY_MAPPING = {r"^model\.(?!language_model\.)": "model.language_model.", r"^visual\.": "model.visual."}


def formatting_prompts_func(query, doc, query_type="text", doc_type="text"):
    query_part = "**Query**:\n<|vision_start|><|image_pad|><|vision_end|>" if query_type == "image" else f"**Query**:\n{query}"
    doc_part = "**Document**:\n<|vision_start|><|image_pad|><|vision_end|>" if doc_type == "image" else f"**Document**:\n{doc}"
    return doc_part + "\n" + query_part


def jina_reference(folder, query, pages):
    """JinaVLForRanking.compute_score(pairs, doc_type="image")."""
    # The checkpoint carries the pre-4.52 Qwen2-VL key names; transformers maps them back for its own
    # classes only, so this class (like trust_remote_code's) says how, as remote code must.
    model = JinaVLForRanking.from_pretrained(folder, key_mapping=JINA_KEY_MAPPING).eval()
    processor = load_page_processor(str(folder), model.config)
    processor.image_processor.size = {"shortest_edge": 3136, "longest_edge": 602112}  # min/max_pixels as there
    processor.tokenizer.padding_side = "left"
    batch = processor(text=[formatting_prompts_func(query, None, doc_type="image") for _ in pages], images=list(pages),
                      return_tensors="pt", padding=True)
    rows = batch["input_ids"].size(0)
    batch["input_ids"] = torch.cat([batch["input_ids"], torch.full((rows, 1), model.score_token_id)], dim=1)
    batch["attention_mask"] = torch.cat([batch["attention_mask"], torch.ones((rows, 1), dtype=batch["attention_mask"].dtype)], dim=1)
    if "mm_token_type_ids" in batch:
        types = batch["mm_token_type_ids"]
        batch["mm_token_type_ids"] = torch.cat([types, torch.zeros((rows, 1), dtype=types.dtype)], dim=1)
    with torch.no_grad():
        return model, model(**batch).view(-1).double().numpy()


@pytest.fixture(scope="module")
def jina():
    return load_reranker({"backend": "vlm-page", "model": str(tiny_model("jina_m0")), "preset": "jina-reranker-m0",
                          "show_progress_bar": False})


def test_jina_m0_scores_equal_the_reference(jina):
    from safetensors import safe_open

    model, expected = jina_reference(tiny_model("jina_m0"), QUERY, JINA_PAGES)
    # The checkpoint's weights (pre-4.52 key names) really loaded, in ours and in the reference.
    with safe_open(str(tiny_model("jina_m0") / "model.safetensors"), framework="pt") as handle:
        saved = handle.get_tensor("model.layers.0.self_attn.q_proj.weight")
        head = handle.get_tensor("score.2.weight")
    assert torch.equal(jina.model.model.language_model.layers[0].self_attn.q_proj.weight, saved)
    assert torch.equal(model.score[2].weight, head)
    assert torch.equal(model.model.language_model.layers[0].self_attn.q_proj.weight, saved)
    assert JINA_SCORE_TOKEN_ID == jina.score_token_id
    raw, relevance = _scores(jina, JINA_PAGES)
    np.testing.assert_allclose(relevance, expected, atol=1e-4)
    np.testing.assert_allclose(raw, np.log(expected / (1 - expected)), atol=1e-3)
    assert np.ptp(raw) > 0.1


def test_jina_m0_page_scores_the_same_alone_and_in_a_batch_of_eight(jina):
    together, _ = _scores(jina, JINA_PAGES)
    assert jina.stats.batches[0][0] == 8
    for i in (0, 5, 6):
        alone, _ = _scores(jina, [JINA_PAGES[i]])
        assert together[i] == pytest.approx(alone[0], abs=1e-4)
    text = jina._prompt_text("q")
    actual = [int(jina.processor(text=[text], images=[p], return_tensors="pt")["input_ids"].shape[1]) + 1 for p in JINA_PAGES]
    assert jina.pair_lengths([text] * len(JINA_PAGES), JINA_PAGES) == actual  # the score token counted


def test_jina_m0_without_the_score_token_scores_far_apart(jina):
    variant = load_reranker({"backend": "vlm-page", "model": str(tiny_model("jina_m0")), "preset": "jina-reranker-m0",
                             "score_token_id": None})
    a, _ = _scores(jina, JINA_PAGES[:3])
    b, _ = _scores(variant, JINA_PAGES[:3])
    assert np.max(np.abs(a - b)) > 1e-2


def test_head_scoring_needs_score_weights():
    with pytest.raises(ConfigError, match="scoring.*no score.\\* weights"):
        load_reranker({"backend": "vlm-page", "model": str(tiny_model("qwen2_vl")), "scoring": "head"})


def test_user_content_errors_name_the_field():
    folder = str(tiny_model("qwen2_vl"))
    with pytest.raises(ConfigError, match="user_content.*exactly one part"):
        load_reranker({"backend": "vlm-page", "model": folder, "user_content": ["{query}"]})
    with pytest.raises(ConfigError, match="user_content.*no \\{query\\}"):
        load_reranker({"backend": "vlm-page", "model": folder, "user_content": ["{image}", "is it relevant?"]})
    with pytest.raises(ConfigError, match="user_content.*placeholder"):
        load_reranker({"backend": "vlm-page", "model": folder, "user_content": ["{image}", "{query} {page}"]})


# ---------------------------------------------------------------------- trust_remote_code


def test_a_checkpoint_with_its_own_code_needs_the_explicit_opt_in(caplog):
    folder = str(tiny_model("custom_code_vl"))
    with pytest.raises(ConfigError, match="field 'model'.*trust_remote_code: true"):
        load_reranker({"backend": "vlm-page", "model": folder})
    with caplog.at_level(logging.WARNING, logger="rankbridge.rerankers.backends.vlm_page"):
        reranker = load_reranker({"backend": "vlm-page", "model": folder, "trust_remote_code": True, "show_progress_bar": False})
    assert type(reranker.model).__name__ == "TinyCustomVL"  # the folder's own class
    assert any("trust_remote_code is on" in r.getMessage() for r in caplog.records)
    # Same weights as the plain tiny Qwen2-VL (same builder and seed): the same scores.
    plain = load_reranker({"backend": "vlm-page", "model": str(tiny_model("qwen2_vl")), "show_progress_bar": False})
    np.testing.assert_allclose(_scores(reranker, JINA_PAGES[:3])[0], _scores(plain, JINA_PAGES[:3])[0], atol=1e-5)


def test_duplicate_pages_tie_exactly_and_keep_input_order(qwen3_vl):
    pages = [QWEN3_PAGES[5], QWEN3_PAGES[0], QWEN3_PAGES[2], QWEN3_PAGES[0].copy(), QWEN3_PAGES[6], QWEN3_PAGES[0]]
    result = qwen3_vl.rank(QUERY, [Candidate(image=p) for p in pages])
    assert qwen3_vl.stats.pairs == 4  # the three copies of one page ran once
    dup = [r for r in result if r.index in (1, 3, 5)]
    assert len({r.score for r in dup}) == 1 and [r.index for r in dup] == [1, 3, 5]
