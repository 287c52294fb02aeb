"""`vlm-page`: a vision-language model scores (query, page image).

Families (`preset:`), each written as its model card's code writes it:

- `monoqwen2-vl` (the default): MonoQwen2-VL. The page image, then a prompt asking whether it is
  relevant to the query, in the model's chat template; the next-token logits of ``True`` /
  ``False`` give a log-odds score; relevance = P(True) against P(False).
- `qwen3-vl-reranker`: Qwen3-VL-Reranker. System line "Judge whether the Document meets the
  requirements ...", a user turn of `<Instruct>: {task}`, `<Query>:`, the query, `\n<Document>:`,
  the page; score = logit(yes) - logit(no) at the last token; pages within 4x32x32 ..
  1800x32x32 pixels.
- `jina-reranker-m0`: a Qwen2-VL backbone with a score head (`scoring: head`): plain text
  ``**Document**:\n<page>\n**Query**:\n{query}`` (no chat template), the score token (id 100)
  appended, the `score.*` MLP of the checkpoint on its last hidden state, score = head - 2.65,
  relevance = sigmoid(score). The head is read from the checkpoint's safetensors, so the
  checkpoint's own Python code (`JinaVLForRanking`) is not needed.

A preset only sets defaults: any field given in the config wins. Architectures transformers does
not ship (e.g. Nemotron Rerank VL) need their checkpoint's own code: `trust_remote_code: true`
is an explicit opt-in (off by default, logged with a warning when on).

Works with Qwen2-VL, Qwen2.5-VL and Qwen3-VL (image processors with `min_pixels`/`max_pixels`)
and with Idefics3 / SmolVLM (tiled images), through the same code. Image processing uses
transformers' PIL backend only (no torchvision). LoRA adapters (peft) load on top of the base
model, as MonoQwen2-VL ships.

Pairs are sorted by length and batched under a token budget (`max_tokens_per_batch`: text + image
tokens, padded), so large pages do not share a batch with many others; the answer is read at each
row's last real token, so right padding never changes a score.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from dataclasses import dataclass

from pydantic import Field, field_validator, model_validator

from rankbridge.rerankers.core.base import Reranker, Scores
from rankbridge.rerankers.core.calibration import sigmoid
from rankbridge.rerankers.core.config import RerankerConfig
from rankbridge.rerankers.core.errors import BackendError, ConfigError, require
from rankbridge.rerankers.core.paths import resolve_model
from rankbridge.rerankers.pages.images import candidate_image, fit_pixels, image_hash
from rankbridge.rerankers.core.types import Candidate
from rankbridge.rerankers.pages.prompt import MONOQWEN_PROMPT, check_pixel_range, check_prompt_has_query
from rankbridge.rerankers.runtime.batching import BatchStats, distinct, plan_batches, progress_bar
from rankbridge.rerankers.runtime.devices import resolve_device, torch_dtype

logger = logging.getLogger(__name__)

EXTRA = "vlm"

QWEN3_VL_SYSTEM = (
    "Judge whether the Document meets the requirements based on the Query and the Instruct provided. "
    'Note that the answer can only be "yes" or "no".'
)
QWEN3_VL_TASK = "Given a search query, retrieve relevant candidates that answer the query."


@dataclass(frozen=True)
class PagePreset:
    """A page reranker family's recipe, as the field values `vlm-page` takes."""

    user_content: tuple[str, ...] | None = None
    system: str | None = None
    task: str | None = None
    use_chat_template: bool = True
    yes_token: str = "True"
    no_token: str = "False"
    scoring: str = "yes-no"
    score_token_id: int | None = None
    head_bias: float = 0.0
    min_pixels: int | None = 28 * 28 * 4
    max_pixels: int | None = 28 * 28 * 768
    reference: str = ""


PAGE_PRESETS: dict[str, PagePreset] = {
    "monoqwen2-vl": PagePreset(reference="lightonai/MonoQwen2-VL-v0.1 model card"),
    # Qwen3-VL-Reranker's format_mm_instruction: system line; <Instruct>, <Query>: + text, \n<Document>: + image.
    "qwen3-vl-reranker": PagePreset(
        user_content=("<Instruct>: {task}", "<Query>:", "{query}", "\n<Document>:", "{image}"),
        system=QWEN3_VL_SYSTEM,
        task=QWEN3_VL_TASK,
        yes_token="yes",
        no_token="no",
        min_pixels=4 * 32 * 32,
        max_pixels=1800 * 32 * 32,
        reference="Qwen3-VL-Reranker (Qwen3VLReranker in the Qwen3-VL-Embedding repository)",
    ),
    # jina-reranker-m0's formatting_prompts_func (doc_type image) and JinaVLForRanking.forward.
    "jina-reranker-m0": PagePreset(
        user_content=("**Document**:\n", "{image}", "\n**Query**:\n{query}"),
        use_chat_template=False,
        scoring="head",
        score_token_id=100,
        head_bias=2.65,
        min_pixels=3136,
        max_pixels=602112,
        reference="jinaai/jina-reranker-m0 modeling.py",
    ),
}

_RENAMED = {"max_batch_tokens": "max_tokens_per_batch", "progress": "show_progress_bar"}


class VLMPageConfig(RerankerConfig):
    """Configuration of the `vlm-page` backend."""

    NOT_SCORE_FIELDS: ClassVar[frozenset[str]] = RerankerConfig.NOT_SCORE_FIELDS | frozenset(
        {"batch_size", "max_tokens_per_batch", "show_progress_bar"}
    )

    backend: Literal["vlm-page"] = "vlm-page"
    model: str = Field(
        description="The vision-language model: a local folder, a name under $RANKBRIDGE_MODEL_DIR, or a "
        "Hugging Face id (e.g. `Qwen/Qwen2-VL-2B-Instruct`). For a LoRA checkpoint, the base model."
    )
    preset: Literal["monoqwen2-vl", "qwen3-vl-reranker", "jina-reranker-m0"] | None = Field(
        None,
        description="A page reranker family's recipe: `monoqwen2-vl` (the defaults), `qwen3-vl-reranker`, "
        "`jina-reranker-m0`. It sets the defaults of the prompt, answer tokens, scoring and pixel limits; "
        "fields set here still override them.",
    )
    adapter: str | None = Field(
        None,
        description="A peft LoRA adapter loaded on top of `model` and merged, e.g. "
        "`lightonai/MonoQwen2-VL-v0.1` on `Qwen/Qwen2-VL-2B-Instruct`.",
    )
    processor: str | None = Field(
        None, description="Where to load the processor (tokenizer, image processor, chat template) from; default `model`."
    )
    prompt: str = Field(
        MONOQWEN_PROMPT,
        description="The user turn after the image; `{query}` is replaced by the query. Default: MonoQwen2-VL's "
        "prompt. Not used when `user_content` is given (or set by a preset).",
    )
    user_content: list[str] | None = Field(
        None,
        description="The user turn as parts, in order: a part that is exactly `{image}` is the page; other parts "
        "are text with `{query}` and `{task}` filled in. Default: the page, then `prompt`.",
    )
    system: str | None = Field(None, description="A system message before the user turn (chat template only).")
    task: str | None = Field(
        None,
        description="Text for `{task}` in `user_content` (Qwen3-VL-Reranker's instruction, default "
        "\"Given a search query, retrieve relevant candidates that answer the query.\").",
    )
    use_chat_template: bool = Field(
        True,
        description="Wrap the parts in the processor's chat template; false joins them as plain text, the page "
        "written as the model's image placeholder (jina-reranker-m0).",
    )
    scoring: Literal["yes-no", "head"] = Field(
        "yes-no",
        description="`yes-no`: score = logit(yes_token) - logit(no_token) at the last token; `head`: the "
        "checkpoint's `score.*` layers (a Linear, or Linear-ReLU-Linear) on the last hidden state, minus "
        "`head_bias`. Relevance = sigmoid(score).",
    )
    score_token_id: int | None = Field(
        None, ge=0, description="A token appended after the prompt, read by the score head (jina-reranker-m0: 100)."
    )
    head_bias: float = Field(0.0, description="Subtracted from the score head's output (jina-reranker-m0: 2.65).")
    yes_token: str = Field("True", description="The answer token whose probability is the relevance.")
    no_token: str = Field("False", description="The answer token it is compared against.")
    min_pixels: int | None = Field(
        28 * 28 * 4,
        ge=1,
        description="Smallest image area in pixels; smaller pages are scaled up (aspect ratio kept). None: no minimum.",
    )
    max_pixels: int | None = Field(
        28 * 28 * 768,
        ge=1,
        description="Largest image area in pixels; larger pages are scaled down (aspect ratio kept). For Qwen2-VL "
        "one image token covers 28x28 pixels, so the default is at most 768 image tokens. None: the processor's own limit.",
    )
    max_tokens_per_batch: int = Field(
        8192,
        ge=1,
        description="Token budget of one forward pass: batch size x longest (text + image tokens) pair in it. "
        "A pair longer than the budget runs alone.",
    )
    batch_size: int = Field(16, ge=1, description="Most pairs in one forward pass.")
    device: str | None = Field(None, description="torch device; default (None or `auto`): `cuda`, then `mps`, then `cpu`.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weights dtype; `auto`: bfloat16 on GPU, float32 on CPU."
    )
    attn_implementation: str | None = Field(
        None, description="transformers attention implementation (`sdpa`, `eager`, `flash_attention_2`); default transformers' choice."
    )
    trust_remote_code: bool = Field(
        False,
        description="Run the Python code a checkpoint ships (architectures transformers lacks, e.g. Nemotron "
        "Rerank VL). Off by default; logged with a warning when on. Only for checkpoints you trust.",
    )
    show_progress_bar: bool | None = Field(
        None, description="Show a tqdm bar over batches. Default: only for long runs (20+ batches) on a terminal."
    )

    @model_validator(mode="before")
    @classmethod
    def _renamed_fields(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for old, new in _RENAMED.items():
                if old in data:
                    raise ValueError(f"field '{old}' is now called '{new}'")
        return data

    @field_validator("prompt")
    @classmethod
    def _prompt_has_query(cls, value: str) -> str:
        return check_prompt_has_query(value)

    @model_validator(mode="after")
    def _pixels_in_order(self) -> VLMPageConfig:
        check_pixel_range(self.min_pixels, self.max_pixels)
        return self


class VLMPageReranker(Reranker):
    """Rerank page images with a vision-language model answering "is this page relevant?".

    Example:
        >>> from rankbridge.rerankers import Candidate, load_reranker
        >>> reranker = load_reranker({
        ...     "backend": "vlm-page",
        ...     "model": "Qwen/Qwen2-VL-2B-Instruct",
        ...     "adapter": "lightonai/MonoQwen2-VL-v0.1",
        ... })  # doctest: +SKIP
        >>> pages = [Candidate(image="page1.png"), Candidate(image="page2.png")]
        >>> reranker.rank("What is the revenue in 2023?", pages).ids  # doctest: +SKIP
        >>> qwen3_vl = load_reranker({"backend": "vlm-page", "model": "Qwen/Qwen3-VL-Reranker-2B",
        ...                           "preset": "qwen3-vl-reranker"})  # doctest: +SKIP
    """

    name = "vlm-page"
    config_class = VLMPageConfig
    accepts_text = False
    accepts_images = True

    def __init__(self, config: Any = None, **kwargs: Any):
        super().__init__(config, **kwargs)
        self.preset = PAGE_PRESETS[self.config.preset] if self.config.preset else None
        self.stats = BatchStats()
        self._load()

    def model_fingerprint(self) -> str:
        """Content hash of the model, adapter and processor folders (computed once): the score cache
        never serves another model's scores. Relevance is sigmoid of each page's raw score: pointwise."""
        if "_fingerprint" not in self.__dict__:
            from rankbridge.rerankers.core.cache import path_fingerprint

            cfg = self.config
            refs = [resolve_model(r) if r else None for r in (cfg.model, cfg.adapter, cfg.processor)]
            self._fingerprint = path_fingerprint(*refs)
        return self._fingerprint

    def scores_are_pointwise(self) -> bool:
        return True

    def setting(self, name: str) -> Any:
        """The effective value of field `name`: what the config sets, else the preset's, else the default."""
        cfg = self.config
        if self.preset is not None and name not in cfg.model_fields_set and hasattr(self.preset, name):
            value = getattr(self.preset, name)
            return list(value) if isinstance(value, tuple) else value
        return getattr(cfg, name)

    # ------------------------------------------------------------------ loading

    def _load(self) -> None:
        torch = require("torch", extra=EXTRA)
        transformers = require("transformers", extra=EXTRA)
        cfg = self.config
        check_pixel_range(self.setting("min_pixels"), self.setting("max_pixels"))
        self._check_content()
        model_path = resolve_model(cfg.model)
        processor_path = resolve_model(cfg.processor) if cfg.processor else model_path
        if cfg.trust_remote_code:
            logger.warning(
                "vlm-page: trust_remote_code is on: the Python code shipped with %r runs in this process", cfg.model
            )
        self.device = torch.device(resolve_device(cfg.device, extra=EXTRA))
        dtype = torch_dtype(cfg.dtype, str(self.device), extra=EXTRA)
        kwargs: dict[str, Any] = {"dtype": dtype}
        if cfg.attn_implementation:
            kwargs["attn_implementation"] = cfg.attn_implementation
        if cfg.trust_remote_code:
            kwargs["trust_remote_code"] = True
        try:
            with _quiet_transformers(self.setting("scoring") == "head"):
                model = transformers.AutoModelForImageTextToText.from_pretrained(model_path, **kwargs)
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"field 'model' of backend 'vlm-page': cannot load {cfg.model!r}: {_first_line(exc)}{_remote_hint(exc, cfg)}"
            ) from None
        if cfg.adapter:
            peft = require("peft", extra=EXTRA)
            try:
                model = peft.PeftModel.from_pretrained(model, resolve_model(cfg.adapter))
            except (OSError, ValueError) as exc:
                raise ConfigError(
                    f"field 'adapter' of backend 'vlm-page': cannot load {cfg.adapter!r}: {_first_line(exc)}"
                ) from None
            model = model.merge_and_unload()
        self.model = model.to(self.device).eval()
        self.processor = load_page_processor(processor_path, model.config, trust_remote_code=cfg.trust_remote_code)
        self.tokenizer = self.processor.tokenizer
        self.tokenizer.padding_side = "right"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self._pixel_limits_in_processor = _set_pixel_limits(
            self.processor, self.setting("min_pixels"), self.setting("max_pixels")
        )
        self._prompt_text("probe")  # fails now, not at the first query, if there is no chat template
        if self.setting("scoring") == "head":
            self._head = _score_head(model_path, self.device, self.model.dtype)
            self.score_token_id = self.setting("score_token_id")
            if self.score_token_id is not None and self.score_token_id >= len(self.tokenizer):
                raise ConfigError(
                    f"field 'score_token_id' of backend 'vlm-page' is {self.score_token_id}, outside the "
                    f"tokenizer's {len(self.tokenizer)} tokens"
                )
            return
        self.yes_id = self._single_token(self.setting("yes_token"), "yes_token")
        self.no_id = self._single_token(self.setting("no_token"), "no_token")
        head = self.model.get_output_embeddings()
        rows = torch.tensor([self.no_id, self.yes_id], device=self.device)
        # Only the two answer rows of the LM head are ever needed: [no, yes] x hidden.
        self._answer_weight = head.weight.detach().index_select(0, rows)
        bias = getattr(head, "bias", None)
        self._answer_bias = None if bias is None else bias.detach().index_select(0, rows)

    def _check_content(self) -> None:
        parts = self.setting("user_content")
        if parts is None:
            return
        field = "user_content" if "user_content" in self.config.model_fields_set else f"preset '{self.config.preset}'"
        if sum(p == "{image}" for p in parts) != 1:
            raise ConfigError(f"{field} of backend 'vlm-page' must have exactly one part that is exactly {{image}}")
        if not any("{query}" in p for p in parts):
            raise ConfigError(f"{field} of backend 'vlm-page' has no {{query}}")
        for part in parts:
            if part == "{image}":
                continue
            try:
                part.format(query="", task="")
            except (KeyError, IndexError, ValueError) as exc:
                raise ConfigError(
                    f"{field} of backend 'vlm-page': part {part!r} has a placeholder other than {{query}} and {{task}} "
                    f"({exc}); write {{{{ and }}}} for braces"
                ) from None

    def _single_token(self, token: str, field_name: str) -> int:
        ids = self.tokenizer.encode(token, add_special_tokens=False)
        if len(ids) != 1:
            raise ConfigError(
                f"field '{field_name}' of backend 'vlm-page': {token!r} is {len(ids)} tokens for this "
                "tokenizer; the answer must be a single token"
            )
        return int(ids[0])

    # ------------------------------------------------------------------ inputs

    def _parts(self, query: str) -> list[tuple[str, str]]:
        """The user turn as ("image", "") and ("text", text) parts."""
        parts = self.setting("user_content")
        if parts is None:
            return [("image", ""), ("text", self.setting("prompt").format(query=query))]
        task = self.setting("task") or ""
        return [("image", "") if p == "{image}" else ("text", p.format(query=query, task=task)) for p in parts]

    def _prompt_text(self, query: str) -> str:
        parts = self._parts(query)
        if not self.setting("use_chat_template"):
            placeholder = _image_placeholder(self.processor)
            return "".join(placeholder if kind == "image" else text for kind, text in parts)
        content = [{"type": "image"} if kind == "image" else {"type": "text", "text": text} for kind, text in parts]
        messages = [{"role": "user", "content": content}]
        system = self.setting("system")
        if system:
            messages.insert(0, {"role": "system", "content": [{"type": "text", "text": system}]})
        if getattr(self.processor, "chat_template", None) or getattr(self.tokenizer, "chat_template", None):
            return self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        raise ConfigError(
            f"backend 'vlm-page': the processor of {self.config.model!r} has no chat template; "
            "a page reranker needs the model's chat format (or use_chat_template: false with plain-text parts)"
        )

    def _prepare_image(self, index: int, candidate: Candidate):
        image = candidate_image(index, candidate)
        if self._pixel_limits_in_processor:
            return image  # the processor resizes within min/max pixels itself (Qwen2-VL smart_resize)
        return fit_pixels(image, self.setting("min_pixels"), self.setting("max_pixels"))

    def pair_lengths(self, texts: list[str], images: list[Any]) -> list[int]:
        """Sequence length (text + image tokens) of each (prompt, image) pair, without
        running the image processor."""
        # Tokenized as the processor tokenizes (special tokens included, e.g. a BOS).
        known: dict[str, int] = {}
        for t in texts:
            if t not in known:
                known[t] = len(self.tokenizer(t)["input_ids"])
        extra = 1 if self.setting("scoring") == "head" and self.score_token_id is not None else 0
        text_lengths = [known[t] + extra for t in texts]
        image_sizes = [(img.size[1], img.size[0]) for img in images]
        counter = getattr(self.processor, "_get_num_multimodal_tokens", None)
        image_token = getattr(self.processor, "image_token", None)
        if counter is not None and image_token is not None:
            try:
                image_tokens = counter(image_sizes=image_sizes)["num_image_tokens"]
                placeholder = len(self.tokenizer(image_token, add_special_tokens=False)["input_ids"])
                return [t - placeholder + n for t, n in zip(text_lengths, image_tokens)]
            except (KeyError, TypeError, ValueError, NotImplementedError):
                logger.debug("processor cannot count image tokens from sizes; processing pairs one by one")
        return [
            int(self.processor(text=[t], images=[img], return_tensors="pt")["input_ids"].shape[1]) + extra
            for t, img in zip(texts, images)
        ]

    # ------------------------------------------------------------------ scoring

    def _score_batch(self, queries: list[str], candidate_lists: list[list[Candidate]]) -> list[Scores]:
        torch = require("torch", extra=EXTRA)

        prompts = {q: self._prompt_text(q) for q in queries}
        texts: list[str] = []
        images: list[Any] = []
        for query, cands in zip(queries, candidate_lists):
            for i, cand in enumerate(cands):
                texts.append(prompts[query])
                images.append(self._prepare_image(i, cand))
        # Equal (prompt, page) pairs run once, so duplicates tie exactly whatever their batch's padding.
        first, slots = distinct([(t, image_hash(im)) for t, im in zip(texts, images)])
        texts, images = [texts[i] for i in first], [images[i] for i in first]
        lengths = self.pair_lengths(texts, images)
        batches = plan_batches(lengths, self.config.max_tokens_per_batch, self.config.batch_size)
        self.stats = BatchStats(pairs=len(texts))
        scores = np.zeros(len(texts), dtype=np.float64)
        bar = progress_bar(len(batches), self.config.show_progress_bar, "vlm-page batches")
        with torch.inference_mode():
            for batch in batches:
                enc = self.processor(
                    text=[texts[i] for i in batch], images=[images[i] for i in batch], return_tensors="pt", padding=True
                )
                if self.setting("scoring") == "head" and self.score_token_id is not None:
                    enc = _append_token(enc, self.score_token_id, self.tokenizer.pad_token_id or 0)
                self.stats.batches.append((len(batch), int(enc["input_ids"].shape[1])))
                scores[batch] = self._batch_scores(enc)
                bar.update(1)
        bar.close()
        scores = scores[slots]
        relevance = sigmoid(scores)  # yes-no: = softmax([no, yes])[yes]
        out, start = [], 0
        for cands in candidate_lists:
            end = start + len(cands)
            out.append(Scores(scores=scores[start:end], relevance=relevance[start:end]))
            start = end
        return out

    def _last_hidden(self, enc: Any) -> tuple[Any, Any]:
        """(final hidden state at each row's last real token, those positions); the state is None
        when the model has no separate backbone. Right padding."""
        torch = require("torch", extra=EXTRA)
        last = enc["attention_mask"].sum(dim=1) - 1
        backbone = getattr(self.model, "model", None)
        if backbone is None:
            return None, last
        hidden = backbone(**enc, use_cache=False).last_hidden_state
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last], last

    def _batch_scores(self, enc: Any) -> np.ndarray:
        enc = {k: (v.to(self.device) if hasattr(v, "to") else v) for k, v in enc.items()}
        if "pixel_values" in enc and enc["pixel_values"].is_floating_point():
            enc["pixel_values"] = enc["pixel_values"].to(self.model.dtype)
        if "mm_token_type_ids" in enc and not _accepts(self.model, "mm_token_type_ids"):
            enc.pop("mm_token_type_ids")
        if self.setting("scoring") == "head":
            rows, _ = self._last_hidden(enc)
            if rows is None:
                raise BackendError(f"vlm-page: scoring 'head' needs a model with a backbone (`.model`); {type(self.model).__name__} has none")
            score = self._head(rows.to(self._head_dtype())) - float(self.setting("head_bias"))
            return score.float().cpu().numpy().astype(np.float64)
        logits = self._answer_logits(enc)
        return logits[:, 1] - logits[:, 0]

    def _head_dtype(self) -> Any:
        return next(iter(self._head.parameters())).dtype

    def _answer_logits(self, enc: Any) -> np.ndarray:
        """[no, yes] logits at each row's last real token (right padding)."""
        torch = require("torch", extra=EXTRA)
        rows, last = self._last_hidden(enc)
        if rows is None:  # no separate backbone: the full forward, then the two answer columns
            logits = self.model(**enc, use_cache=False).logits
            picked = logits[torch.arange(logits.shape[0], device=logits.device), last]
            return picked[:, [self.no_id, self.yes_id]].float().cpu().numpy().astype(np.float64)
        answer = rows.to(self._answer_weight.dtype) @ self._answer_weight.T
        if self._answer_bias is not None:
            answer = answer + self._answer_bias
        return answer.float().cpu().numpy().astype(np.float64)


def _append_token(enc: Any, token_id: int, pad_id: int) -> dict[str, Any]:
    """`enc` (right padded) with `token_id` written after each row's last real token."""
    torch = require("torch", extra=EXTRA)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    rows, width = ids.shape
    lengths = mask.sum(dim=1)
    new_ids = torch.full((rows, width + 1), pad_id, dtype=ids.dtype)
    new_ids[:, :width] = ids
    new_mask = torch.zeros((rows, width + 1), dtype=mask.dtype)
    new_mask[:, :width] = mask
    index = torch.arange(rows)
    new_ids[index, lengths] = token_id
    new_mask[index, lengths] = 1
    out = dict(enc)
    out["input_ids"], out["attention_mask"] = new_ids, new_mask
    if "mm_token_type_ids" in enc:
        types = torch.zeros((rows, width + 1), dtype=enc["mm_token_type_ids"].dtype)
        types[:, :width] = enc["mm_token_type_ids"]
        out["mm_token_type_ids"] = types
    return out


def _score_head(model_path: str, device: Any, dtype: Any) -> Any:
    """The checkpoint's `score.*` layers as a torch module: one Linear (`score.weight`), or Linears
    `score.<i>.*` with a ReLU between consecutive ones (jina-reranker-m0's Linear-ReLU-Linear)."""
    torch = require("torch", extra=EXTRA)
    from safetensors import safe_open

    tensors: dict[str, Any] = {}
    for file in sorted(Path(model_path).glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():
                if key.startswith("score."):
                    tensors[key[len("score."):]] = handle.get_tensor(key)
    if not tensors:
        raise ConfigError(
            f"field 'scoring' of backend 'vlm-page' is 'head', but {model_path} holds no score.* weights "
            "(a checkpoint with a score head, e.g. jina-reranker-m0, has them)"
        )
    if "weight" in tensors:
        layers = [(tensors["weight"], tensors.get("bias"))]
    else:
        indices = sorted({int(k.split(".")[0]) for k in tensors if k.split(".")[0].isdigit()})
        layers = [(tensors[f"{i}.weight"], tensors.get(f"{i}.bias")) for i in indices]
    modules = []
    for n, (weight, bias) in enumerate(layers):
        linear = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
        with torch.no_grad():
            linear.weight.copy_(weight)
            if bias is not None:
                linear.bias.copy_(bias)
        modules.append(linear)
        if n < len(layers) - 1:
            modules.append(torch.nn.ReLU())
    if layers[-1][0].shape[0] != 1:
        raise ConfigError(f"backend 'vlm-page': the score head of {model_path} gives {layers[-1][0].shape[0]} outputs, not one")
    head = torch.nn.Sequential(*modules, torch.nn.Flatten(0)).to(device=device, dtype=dtype).eval()
    return head


def _image_placeholder(processor: Any) -> str:
    """How the page is written in plain text: the processor's image token, inside the vision
    start/end markers where the tokenizer has them (Qwen2-VL, Qwen3-VL)."""
    token = getattr(processor, "image_token", None) or "<image>"
    vocab = processor.tokenizer.get_vocab()
    start = getattr(processor, "vision_start_token", "<|vision_start|>")
    end = getattr(processor, "vision_end_token", "<|vision_end|>")
    if start in vocab and end in vocab:
        return f"{start}{token}{end}"
    return token


class _quiet_transformers:
    """Silence transformers' load report while loading a checkpoint whose extra weights (a score
    head) and missing LM head are expected."""

    def __init__(self, active: bool):
        self.active = active
        self.level = None

    def __enter__(self):
        if self.active:
            from transformers.utils import logging as hf_logging

            self.level = hf_logging.get_verbosity()
            hf_logging.set_verbosity_error()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.level is not None:
            from transformers.utils import logging as hf_logging

            hf_logging.set_verbosity(self.level)


def _remote_hint(exc: BaseException, cfg: VLMPageConfig) -> str:
    if "trust_remote_code" in str(exc) and not cfg.trust_remote_code:
        return "; its architecture needs the checkpoint's own code: set trust_remote_code: true if you trust it"
    return ""


# ---------------------------------------------------------------------- processor loading


def load_page_processor(path: str, model_config: Any = None, trust_remote_code: bool = False) -> Any:
    """The model's processor, built from its parts with transformers' PIL image backend.

    `AutoProcessor` would also build a video processor, which needs torchvision; a page
    reranker never uses video, so the processor is built from the tokenizer, the PIL image
    processor and the chat template alone.
    """
    transformers = require("transformers", extra=EXTRA)
    folder = Path(path)
    remote = {"trust_remote_code": True} if trust_remote_code else {}
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(path, **remote)
        image_processor = transformers.AutoImageProcessor.from_pretrained(path, backend="pil", **remote)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"backend 'vlm-page': cannot load the processor from {path!r}: {_first_line(exc)}") from None
    try:
        processor_class = _processor_class(folder, model_config, transformers)
    except ConfigError:
        if not trust_remote_code:
            raise
        # A processor of the checkpoint's own code.
        return transformers.AutoProcessor.from_pretrained(path, trust_remote_code=True)
    chat_template = _chat_template(folder) or getattr(tokenizer, "chat_template", None)
    cls = _image_only(processor_class)
    return cls(
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=chat_template,
        **_processor_kwargs(folder, processor_class),
    )


def _processor_kwargs(folder: Path, processor_class: type) -> dict[str, Any]:
    """Settings saved in processor_config.json that the processor takes (e.g. Idefics3's image_seq_len)."""
    import inspect

    path = folder / "processor_config.json"
    if not path.is_file():
        return {}
    saved = json.loads(path.read_text(encoding="utf-8"))
    accepted = set(inspect.signature(processor_class.__init__).parameters) - {
        "self", "image_processor", "tokenizer", "video_processor", "chat_template", "args", "kwargs"
    }
    return {k: v for k, v in saved.items() if k in accepted}


def _processor_class(folder: Path, model_config: Any, transformers: Any) -> type:
    name = None
    for file in ("processor_config.json", "preprocessor_config.json"):
        if (folder / file).is_file():
            name = json.loads((folder / file).read_text()).get("processor_class")
            if name:
                break
    if not name and model_config is not None:
        from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

        name = PROCESSOR_MAPPING_NAMES.get(model_config.model_type)
    cls = getattr(transformers, name, None) if name else None
    if cls is None:
        raise ConfigError(f"backend 'vlm-page': no processor class known for {folder} (got {name!r})")
    return cls


def _chat_template(folder: Path) -> str | None:
    if (folder / "chat_template.jinja").is_file():
        return (folder / "chat_template.jinja").read_text(encoding="utf-8")
    if (folder / "chat_template.json").is_file():
        return json.loads((folder / "chat_template.json").read_text(encoding="utf-8")).get("chat_template")
    return None


_IMAGE_ONLY: dict[type, type] = {}


def _image_only(processor_class: type) -> type:
    """A subclass of `processor_class` whose sub-processors are the image processor and the
    tokenizer only (transformers collects sub-processors from `__init__`'s signature)."""
    import inspect

    if "video_processor" not in inspect.signature(processor_class.__init__).parameters:
        return processor_class
    if processor_class not in _IMAGE_ONLY:

        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            processor_class.__init__(self, image_processor, tokenizer, None, chat_template=chat_template, **kwargs)

        _IMAGE_ONLY[processor_class] = type(processor_class.__name__, (processor_class,), {"__init__": __init__})
    return _IMAGE_ONLY[processor_class]


def _set_pixel_limits(processor: Any, min_pixels: int | None, max_pixels: int | None) -> bool:
    """Give min/max pixels to an image processor that resizes by area (Qwen2-VL, Qwen2.5-VL).
    Returns False for processors that resize otherwise (Idefics3 tiles); those get
    `fit_pixels` before processing."""
    image_processor = processor.image_processor
    size = getattr(image_processor, "size", None)
    if size is None or not hasattr(image_processor, "merge_size"):
        return False

    def get(key: str) -> Any:
        return size.get(key) if isinstance(size, dict) else getattr(size, key, None)

    if get("longest_edge") is None or get("shortest_edge") is None:
        return False
    limits = {
        "shortest_edge": min_pixels if min_pixels is not None else get("shortest_edge"),
        "longest_edge": max_pixels if max_pixels is not None else get("longest_edge"),
    }
    image_processor.size = limits if isinstance(size, dict) else type(size)(**limits)
    return True


def _accepts(model: Any, argument: str) -> bool:
    import inspect

    backbone = getattr(model, "model", model)
    return argument in inspect.signature(backbone.forward).parameters


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


__all__ = ["VLMPageConfig", "VLMPageReranker", "load_page_processor"]
