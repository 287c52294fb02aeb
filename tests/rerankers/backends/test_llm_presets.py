"""`llm-yes-no` presets against re-implementations of each model card's reference code.

Each family runs on a tiny random model of its architecture (Qwen3 for qwen3-reranker, Gemma for
bge-reranker-v2-gemma, Qwen2 for mxbai-rerank-v2) whose tokenizer carries the family's special
tokens and conventions (tests/support/tiny_models.py). With random weights every prompt token
moves the score, so parity to 1e-4 with the reference is a sharp test (each family also shows
that a one-detail change of the prompt moves the score by far more than that).

The references follow the code published with each model:
- Qwen/Qwen3-Reranker-0.6B README: `format_instruction`, `process_inputs` (prefix tokens + the
  user block truncated to fit + suffix tokens, left padding), `compute_logits` (log-softmax over
  [no, yes] at the last position).
- FlagEmbedding `BaseLLMReranker.compute_score_single_gpu` (FlagLLMReranker, bge-reranker-v2-gemma):
  "A: " + query (3/4 of max_length), "B: " + passage (max_length), `prepare_for_model([bos] + q,
  sep + p, truncation="only_second")` + sep + prompt, padded to a multiple of 8, the logit of
  `Yes` at the last real token, sigmoid when normalizing.
- mxbai_rerank `MxbaiRerankV2.prepare_inputs` / `forward`: chat prefix + "query: q" + sep +
  "document: d" (cut to fit) + sep + task prompt + chat suffix; logit("1") - logit("0"), sigmoid.
"""

from __future__ import annotations

import numpy as np
import pytest

from rankbridge.rerankers import Candidate, load_reranker
from rankbridge.rerankers.backends.llm_yes_no import BGE_GEMMA_PROMPT, MXBAI_TASK_PROMPT, QWEN3_SYSTEM, QWEN3_TASK
from rankbridge.rerankers.core.errors import ConfigError
from support.tiny_models import tiny_model

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

pytestmark = [
    pytest.mark.slow,
    # The Qwen3 model card pads with max_length and padding=True; transformers warns that it has no effect.
    pytest.mark.filterwarnings("ignore:`max_length` is ignored:UserWarning"),
]

QUERY = "what is the capital of France?"
DOCS = [
    "Paris is the capital and largest city of France.",
    "Bananas are yellow fruit.",
    "",
    "Statins lower LDL cholesterol in most adults, and the effect lasts.",
    "The night train to Lyon leaves at eleven.",
    "Paris",
    "A: not the query. B: not the passage. Yes or No?",
    "Tokyo is the capital of Japan; Paris is the capital of France; Rome is the capital of Italy.",
]
LONG_DOC = "Statins lower LDL cholesterol. " * 200
FAMILY = {"qwen3-reranker": "qwen3", "bge-reranker-v2-gemma": "gemma", "mxbai-rerank-v2": "qwen2"}
MAX_LENGTH = 512


# ---------------------------------------------------------------------- the references


def _forward_last(model, input_ids, attention_mask):
    """Logits at each row's last real token (FlagEmbedding's last_logit_pool; with left padding: [:, -1])."""
    with torch.no_grad():
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
    if bool((attention_mask[:, -1] == 1).all()):
        return logits[:, -1, :].double()
    last = attention_mask.sum(dim=1) - 1
    return logits[torch.arange(logits.shape[0]), last].double()


def qwen3_reference(folder, pairs, task=QWEN3_TASK, max_length=MAX_LENGTH):
    """Qwen3-Reranker model card: returns (token ids per pair, raw yes-no logit, P(yes))."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, padding_side="left")
    model = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    token_false_id = tokenizer.convert_tokens_to_ids("no")
    token_true_id = tokenizer.convert_tokens_to_ids("yes")
    prefix = (
        "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct "
        'provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
    )
    suffix = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    prefix_tokens = tokenizer.encode(prefix, add_special_tokens=False)
    suffix_tokens = tokenizer.encode(suffix, add_special_tokens=False)
    formatted = [f"<Instruct>: {task}\n<Query>: {q}\n<Document>: {d}" for q, d in pairs]
    inputs = tokenizer(
        formatted, padding=False, truncation="longest_first", return_attention_mask=False,
        max_length=max_length - len(prefix_tokens) - len(suffix_tokens),
    )
    ids = [prefix_tokens + ele + suffix_tokens for ele in inputs["input_ids"]]
    batch = tokenizer.pad({"input_ids": ids}, padding=True, return_tensors="pt", max_length=max_length)
    logits = _forward_last(model, batch["input_ids"], batch["attention_mask"])
    pair = torch.stack([logits[:, token_false_id], logits[:, token_true_id]], dim=1)
    p_yes = torch.nn.functional.log_softmax(pair, dim=1)[:, 1].exp()
    return ids, (pair[:, 1] - pair[:, 0]).numpy(), p_yes.numpy()


def _only_second(first, second, max_length):
    """`tokenizer.prepare_for_model(first, second, truncation="only_second", max_length=...)`:
    the first sequence whole, the second cut from its end to fit."""
    keep = max(max_length - len(first), 0)
    return first + second[:keep]


def bge_gemma_reference(folder, pairs, max_length=512, prompt=BGE_GEMMA_PROMPT):
    """FlagEmbedding BaseLLMReranker (FlagLLMReranker): (token ids, raw logit of Yes, sigmoid)."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    yes_loc = tokenizer("Yes", add_special_tokens=False)["input_ids"][0]
    query_max_length = max_length * 3 // 4
    queries = tokenizer([f"A: {q}" for q, _ in pairs], add_special_tokens=False, max_length=query_max_length, truncation=True)
    passages = tokenizer([f"B: {p}" for _, p in pairs], add_special_tokens=False, max_length=max_length, truncation=True)
    prompt_inputs = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    sep_inputs = tokenizer("\n", add_special_tokens=False)["input_ids"]
    encode_max_length = max_length + len(sep_inputs) + len(prompt_inputs)
    assert tokenizer.bos_token_id is not None and tokenizer.bos_token_id != tokenizer.pad_token_id
    ids = [
        _only_second([tokenizer.bos_token_id] + q, sep_inputs + p, encode_max_length) + sep_inputs + prompt_inputs
        for q, p in zip(queries["input_ids"], passages["input_ids"])
    ]
    batch = tokenizer.pad({"input_ids": ids}, padding=True, pad_to_multiple_of=8, return_tensors="pt")
    logits = _forward_last(model, batch["input_ids"], batch["attention_mask"])
    raw = logits[:, yes_loc].numpy()
    return ids, raw, 1.0 / (1.0 + np.exp(-raw))


def mxbai_reference(folder, pairs, max_length=MAX_LENGTH, instruction=None):
    """mxbai_rerank.MxbaiRerankV2 (`max_length` counts query + sep + document, as there)."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    tokenizer.padding_side = "left"
    model = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()

    def get_input_ids(x):
        return tokenizer(x, return_tensors=None, add_special_tokens=False)["input_ids"]

    yes_loc, no_loc = get_input_ids("1")[0], get_input_ids("0")[0]
    task_prompt_inputs = get_input_ids(MXBAI_TASK_PROMPT)
    sep_inputs = get_input_ids("\n")
    prefix_inputs = get_input_ids(
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    )
    suffix_inputs = get_input_ids("<|im_end|>\n<|im_start|>assistant\n")
    ids = []
    for query, document in pairs:
        query_prompt = f"query: {query}"
        if instruction:
            query_prompt = "".join([f"instruction: {instruction}", "\n", query_prompt])
        query_inputs = tokenizer(query_prompt, add_special_tokens=False, max_length=max_length * 3 // 4, truncation=True)
        document_inputs = tokenizer(f"document: {document}", add_special_tokens=False, max_length=max_length, truncation=True)
        item = _only_second(query_inputs["input_ids"], sep_inputs + document_inputs["input_ids"], max_length)
        ids.append(prefix_inputs + item + sep_inputs + task_prompt_inputs + suffix_inputs)
    batch = tokenizer.pad({"input_ids": ids}, padding="longest", pad_to_multiple_of=8, return_tensors="pt")
    logits = _forward_last(model, batch["input_ids"], batch["attention_mask"])
    raw = (logits[:, yes_loc] - logits[:, no_loc]).numpy()
    return ids, raw, 1.0 / (1.0 + np.exp(-raw))


REFERENCES = {"qwen3-reranker": qwen3_reference, "bge-reranker-v2-gemma": bge_gemma_reference, "mxbai-rerank-v2": mxbai_reference}


# ---------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module", params=list(FAMILY))
def family(request):
    preset = request.param
    folder = str(tiny_model(FAMILY[preset]))
    reranker = load_reranker({"backend": "llm-yes-no", "model": folder, "preset": preset, "max_length": MAX_LENGTH})
    return preset, folder, reranker


def _scores(reranker, query, docs):
    result = reranker.rank(query, docs)
    by_index = {r.index: r for r in result}
    return (np.array([by_index[i].score for i in range(len(docs))]), np.array([by_index[i].relevance for i in range(len(docs))]))


# ---------------------------------------------------------------------- parity


def test_token_ids_equal_the_reference_for_pairs_that_fit(family):
    preset, folder, reranker = family
    expected, _, _ = REFERENCES[preset](folder, [(QUERY, d) for d in DOCS])
    got, shortened = reranker.encode(QUERY, DOCS)
    assert shortened == 0
    assert got == expected


def test_scores_equal_the_reference(family):
    preset, folder, reranker = family
    _, ref_raw, ref_relevance = REFERENCES[preset](folder, [(QUERY, d) for d in DOCS])
    raw, relevance = _scores(reranker, QUERY, DOCS)
    np.testing.assert_allclose(raw, ref_raw, atol=1e-4)
    np.testing.assert_allclose(relevance, ref_relevance, atol=1e-4)
    assert np.ptp(raw) > 0.05  # random weights, yet the documents score apart: the parity is not vacuous


def test_a_candidate_scores_the_same_alone_and_in_a_batch_of_eight_mixed_lengths(family):
    preset, folder, reranker = family
    assert len({len(p) for p in reranker.encode(QUERY, DOCS)[0]}) >= 6  # mixed lengths
    unshared = load_reranker({"backend": "llm-yes-no", "model": folder, "preset": preset, "max_length": MAX_LENGTH,
                              "share_prefix": False, "batch_size": 8})
    batch_shared, _ = _scores(reranker, QUERY, DOCS)
    batch_whole, _ = _scores(unshared, QUERY, DOCS)
    for i in (0, 2, 7):
        alone, _ = _scores(unshared, QUERY, [DOCS[i]])
        assert batch_whole[i] == pytest.approx(alone[0], abs=1e-4)
        assert batch_shared[i] == pytest.approx(alone[0], abs=1e-4)


def test_a_long_document_is_cut_and_the_suffix_kept(family):
    preset, folder, reranker = family
    prompts, shortened = reranker.encode(QUERY, [LONG_DOC])
    assert shortened == 1 and len(prompts[0]) == MAX_LENGTH
    _, tail = reranker.prompt_parts(QUERY)
    parts = reranker._query_prompt(QUERY)
    assert prompts[0][-len(parts.tail):] == parts.tail
    assert reranker.tokenizer.decode(parts.tail) == tail
    # The reference, given the budget that leaves the document the same room, cuts identically.
    if preset == "qwen3-reranker":
        ref_ids, ref_raw, _ = qwen3_reference(folder, [(QUERY, LONG_DOC)], max_length=MAX_LENGTH)
    elif preset == "mxbai-rerank-v2":
        # There max_length counts query + sep + document; the chat prefix, sep, task prompt and suffix come on top.
        query_ids = reranker.tokenizer(f"query: {QUERY}", add_special_tokens=False)["input_ids"]
        fixed = len(parts.head) - len(query_ids) - 1 + len(parts.tail)
        ref_ids, ref_raw, _ = mxbai_reference(folder, [(QUERY, LONG_DOC)], max_length=MAX_LENGTH - fixed)
    else:
        # There max_length bounds the passage ("B: ..."); give it the room this prompt leaves.
        room = MAX_LENGTH - len(parts.head) - len(parts.tail)
        ref_ids, ref_raw, _ = bge_gemma_reference(folder, [(QUERY, LONG_DOC)], max_length=room)
    assert prompts[0] == ref_ids[0]
    raw, _ = _scores(reranker, QUERY, [LONG_DOC])
    assert raw[0] == pytest.approx(ref_raw[0], abs=1e-4)


def test_one_prompt_detail_moves_the_score_far_beyond_the_tolerance(family):
    """Why 1e-4 parity is sharp: a single detail changed (the empty think block, the BOS token,
    the separator before the task prompt) moves scores by orders of magnitude more."""
    preset, folder, reranker = family
    segments = reranker.setting("prompt_segments")
    if preset == "qwen3-reranker":
        changed = [segments[0], segments[1], "<|im_end|>\n<|im_start|>assistant\n"]
    elif preset == "bge-reranker-v2-gemma":
        changed = segments[1:]
    else:
        changed = [s for i, s in enumerate(segments) if i != 4]
    variant = load_reranker({"backend": "llm-yes-no", "model": folder, "preset": preset, "max_length": MAX_LENGTH,
                             "prompt_segments": changed})
    a, _ = _scores(reranker, QUERY, DOCS[:3])
    b, _ = _scores(variant, QUERY, DOCS[:3])
    assert np.max(np.abs(a - b)) > 1e-2


# ---------------------------------------------------------------------- preset defaults and overrides


def test_fields_a_user_sets_override_the_preset():
    folder = str(tiny_model("qwen3"))
    task = "Given a claim, find passages that support it"
    reranker = load_reranker({"backend": "llm-yes-no", "model": folder, "preset": "qwen3-reranker", "task": task})
    assert reranker.setting("instruction") == QWEN3_SYSTEM and reranker.setting("task") == task
    ids, _, _ = qwen3_reference(folder, [(QUERY, DOCS[0])], task=task)
    assert reranker.encode(QUERY, DOCS[:1])[0] == ids
    custom = load_reranker({"backend": "llm-yes-no", "model": folder, "preset": "qwen3-reranker",
                            "user_template": "<Query>: {query}\n<Document>: {document}", "yes_token": "Yes"})
    head, _ = custom.prompt_parts(QUERY)
    assert "<Instruct>" not in head and head.startswith("<|im_start|>system\n" + QWEN3_SYSTEM)
    assert custom.yes_id == custom.tokenizer.convert_tokens_to_ids("Yes")


def test_mxbai_task_is_its_optional_instruction_line():
    folder = str(tiny_model("qwen2"))
    reranker = load_reranker({"backend": "llm-yes-no", "model": folder, "preset": "mxbai-rerank-v2", "task": "Find recipes"})
    ids, ref_raw, _ = mxbai_reference(folder, [(QUERY, d) for d in DOCS[:3]], instruction="Find recipes")
    assert reranker.encode(QUERY, DOCS[:3])[0] == ids
    raw, _ = _scores(reranker, QUERY, DOCS[:3])
    np.testing.assert_allclose(raw, ref_raw, atol=1e-4)


def test_prompt_errors_name_the_field():
    folder = str(tiny_model("gemma"))
    base = {"backend": "llm-yes-no", "model": folder}
    with pytest.raises(ConfigError, match="user_template.*not used by preset 'bge-reranker-v2-gemma'"):
        load_reranker({**base, "preset": "bge-reranker-v2-gemma", "user_template": "{query} {document}"})
    with pytest.raises(ConfigError, match="exactly once"):
        load_reranker({**base, "prompt_segments": ["{query}", "no document here"]})
    with pytest.raises(ConfigError, match="must be a piece of its own"):
        load_reranker({**base, "prompt_segments": ["{bos}A: {query}", "B: {document}"]})
    with pytest.raises(ConfigError, match="unknown placeholder"):
        load_reranker({**base, "prompt_segments": ["{query}", "{passage}", "{document}"]})
    with pytest.raises(ConfigError, match="use_chat_template"):
        load_reranker({**base, "preset": "bge-reranker-v2-gemma", "use_chat_template": True})
    with pytest.raises(ConfigError, match="task"):
        load_reranker({**base, "preset": "bge-reranker-v2-gemma", "task": "a task with no slot"})
    with pytest.raises(ConfigError, match="preset"):
        load_reranker({**base, "preset": "qwen4-reranker"})


# ---------------------------------------------------------------------- real weights


def test_qwen3_preset_on_real_smollm2_weights_matches_the_reference():
    """SmolLM2-135M-Instruct speaks ChatML like Qwen: the preset's prompt, token for token, and
    the model card's scores on real weights."""
    from rankbridge.rerankers.runtime.gguf import ensure_safetensors

    folder = str(ensure_safetensors())
    reranker = load_reranker({"backend": "llm-yes-no", "model": folder, "preset": "qwen3-reranker", "max_length": 256})
    docs = [DOCS[0], DOCS[1], DOCS[4], LONG_DOC]
    ids, ref_raw, ref_relevance = qwen3_reference(folder, [(QUERY, d) for d in docs], max_length=256)
    got, shortened = reranker.encode(QUERY, docs)
    assert shortened == 1 and got == ids
    raw, relevance = _scores(reranker, QUERY, [Candidate(text=d) for d in docs])
    np.testing.assert_allclose(raw, ref_raw, atol=1e-4)
    np.testing.assert_allclose(relevance, ref_relevance, atol=1e-4)
