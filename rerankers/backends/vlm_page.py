"""`vlm-page`: a vision-language model scores (query, page image) as P(yes) against P(no).

The MonoQwen2-VL recipe: the page image and a prompt asking whether it is relevant to the query
go through the model's chat template; the next-token logits of the answer words (``True`` /
``False`` by default) give a log-odds score, and relevance = softmax over the two = P(True).

Works with Qwen2-VL and Qwen2.5-VL (image processors with `min_pixels`/`max_pixels`) and with
Idefics3 / SmolVLM (tiled images), through the same code. Image processing uses transformers'
PIL backend only (no torchvision). LoRA adapters (peft) load on top of the base model, as
MonoQwen2-VL ships.

Pairs are sorted by length and batched under a token budget (text + image tokens, padded), so
large pages do not share a batch with many others; the answer logits are read at each row's
last real token, so right padding never changes a score.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from rankbridge.rerankers.core.base import Reranker, Scores
from rankbridge.rerankers.core.calibration import sigmoid
from rankbridge.rerankers.core.config import RerankerConfig
from rankbridge.rerankers.core.errors import ConfigError, require
from rankbridge.rerankers.core.paths import resolve_model
from rankbridge.rerankers.pages.images import candidate_image, fit_pixels
from rankbridge.rerankers.core.types import Candidate
from rankbridge.rerankers.pages.prompt import MONOQWEN_PROMPT, check_pixel_range, check_prompt_has_query
from rankbridge.rerankers.runtime.batching import BatchStats, plan_batches
from rankbridge.rerankers.runtime.devices import torch_dtype

logger = logging.getLogger(__name__)

EXTRA = "vlm"

class VLMPageConfig(RerankerConfig):
    backend: Literal["vlm-page"] = "vlm-page"
    model: str = Field(
        description="The vision-language model: a local folder, a name under $RANKBRIDGE_MODEL_DIR, or a "
        "Hugging Face id (e.g. `Qwen/Qwen2-VL-2B-Instruct`). For a LoRA checkpoint, the base model."
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
        description="The user turn after the image; `{query}` is replaced by the query. Default: MonoQwen2-VL's prompt.",
    )
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
    max_batch_tokens: int = Field(
        8192,
        ge=1,
        description="Token budget of one forward pass: batch size x longest (text + image tokens) pair in it. "
        "A pair longer than the budget runs alone.",
    )
    batch_size: int = Field(16, ge=1, description="Most pairs in one forward pass.")
    device: str | None = Field(None, description="torch device; default `cuda` when available, else `cpu`.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weights dtype; `auto`: bfloat16 on GPU, float32 on CPU."
    )
    attn_implementation: str | None = Field(
        None, description="transformers attention implementation (`sdpa`, `eager`, `flash_attention_2`); default transformers' choice."
    )
    progress: bool = Field(True, description="Show a tqdm bar when scoring takes more than one batch.")

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
    """

    name = "vlm-page"
    config_class = VLMPageConfig
    accepts_text = False
    accepts_images = True

    def __init__(self, config: Any = None, **kwargs: Any):
        super().__init__(config, **kwargs)
        self.stats = BatchStats()
        self._load()

    def model_fingerprint(self) -> str:
        """Content hash of the model, adapter and processor folders (computed once): the score cache
        never serves another model's scores. Relevance is sigmoid of each page's log-odds: pointwise."""
        if "_fingerprint" not in self.__dict__:
            from rankbridge.rerankers.core.cache import path_fingerprint

            cfg = self.config
            refs = [resolve_model(r) if r else None for r in (cfg.model, cfg.adapter, cfg.processor)]
            self._fingerprint = path_fingerprint(*refs)
        return self._fingerprint

    def scores_are_pointwise(self) -> bool:
        return True

    # ------------------------------------------------------------------ loading

    def _load(self) -> None:
        torch = require("torch", extra=EXTRA)
        transformers = require("transformers", extra=EXTRA)
        cfg = self.config
        model_path = resolve_model(cfg.model)
        processor_path = resolve_model(cfg.processor) if cfg.processor else model_path
        self.device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = torch_dtype(cfg.dtype, str(self.device), extra=EXTRA)
        kwargs: dict[str, Any] = {"dtype": dtype}
        if cfg.attn_implementation:
            kwargs["attn_implementation"] = cfg.attn_implementation
        try:
            model = transformers.AutoModelForImageTextToText.from_pretrained(model_path, **kwargs)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"field 'model' of backend 'vlm-page': cannot load {cfg.model!r}: {_first_line(exc)}") from None
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
        self.processor = load_page_processor(processor_path, model.config)
        self.tokenizer = self.processor.tokenizer
        self.tokenizer.padding_side = "right"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self._pixel_limits_in_processor = _set_pixel_limits(self.processor, cfg.min_pixels, cfg.max_pixels)
        self._prompt_text("probe")  # fails now, not at the first query, if there is no chat template
        self.yes_id = self._single_token(cfg.yes_token, "yes_token")
        self.no_id = self._single_token(cfg.no_token, "no_token")
        head = self.model.get_output_embeddings()
        rows = torch.tensor([self.no_id, self.yes_id], device=self.device)
        # Only the two answer rows of the LM head are ever needed: [no, yes] x hidden.
        self._answer_weight = head.weight.detach().index_select(0, rows)
        bias = getattr(head, "bias", None)
        self._answer_bias = None if bias is None else bias.detach().index_select(0, rows)

    def _single_token(self, token: str, field_name: str) -> int:
        ids = self.tokenizer.encode(token, add_special_tokens=False)
        if len(ids) != 1:
            raise ConfigError(
                f"field '{field_name}' of backend 'vlm-page': {token!r} is {len(ids)} tokens for this "
                "tokenizer; the answer must be a single token"
            )
        return int(ids[0])

    # ------------------------------------------------------------------ inputs

    def _prompt_text(self, query: str) -> str:
        content = [{"type": "image"}, {"type": "text", "text": self.config.prompt.format(query=query)}]
        messages = [{"role": "user", "content": content}]
        if getattr(self.processor, "chat_template", None) or getattr(self.tokenizer, "chat_template", None):
            return self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        raise ConfigError(
            f"backend 'vlm-page': the processor of {self.config.model!r} has no chat template; "
            "a page reranker needs the model's chat format"
        )

    def _prepare_image(self, index: int, candidate: Candidate):
        image = candidate_image(index, candidate)
        if self._pixel_limits_in_processor:
            return image  # the processor resizes within min/max pixels itself (Qwen2-VL smart_resize)
        return fit_pixels(image, self.config.min_pixels, self.config.max_pixels)

    def pair_lengths(self, texts: list[str], images: list[Any]) -> list[int]:
        """Sequence length (text + image tokens) of each (prompt, image) pair, without
        running the image processor."""
        # Tokenized as the processor tokenizes (special tokens included, e.g. a BOS).
        known: dict[str, int] = {}
        for t in texts:
            if t not in known:
                known[t] = len(self.tokenizer(t)["input_ids"])
        text_lengths = [known[t] for t in texts]
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
            int(self.processor(text=[t], images=[img], return_tensors="pt")["input_ids"].shape[1])
            for t, img in zip(texts, images)
        ]

    # ------------------------------------------------------------------ scoring

    def _score_batch(self, queries: list[str], candidate_lists: list[list[Candidate]]) -> list[Scores]:
        torch = require("torch", extra=EXTRA)
        from tqdm.auto import tqdm

        prompts = {q: self._prompt_text(q) for q in queries}
        texts: list[str] = []
        images: list[Any] = []
        for query, cands in zip(queries, candidate_lists):
            for i, cand in enumerate(cands):
                texts.append(prompts[query])
                images.append(self._prepare_image(i, cand))
        lengths = self.pair_lengths(texts, images)
        batches = plan_batches(lengths, self.config.max_batch_tokens, self.config.batch_size)
        self.stats = BatchStats(pairs=len(texts))
        logits = np.zeros((len(texts), 2), dtype=np.float64)
        bar = tqdm(batches, desc="vlm-page", unit="batch", disable=not self.config.progress or len(batches) < 2)
        with torch.inference_mode():
            for batch in bar:
                enc = self.processor(
                    text=[texts[i] for i in batch], images=[images[i] for i in batch], return_tensors="pt", padding=True
                )
                self.stats.batches.append((len(batch), int(enc["input_ids"].shape[1])))
                logits[batch] = self._answer_logits(enc)
        scores = logits[:, 1] - logits[:, 0]
        relevance = sigmoid(scores)  # = softmax([no, yes])[yes]
        out, start = [], 0
        for cands in candidate_lists:
            end = start + len(cands)
            out.append(Scores(scores=scores[start:end], relevance=relevance[start:end]))
            start = end
        return out

    def _answer_logits(self, enc: Any) -> np.ndarray:
        """[no, yes] logits at each row's last real token (right padding)."""
        torch = require("torch", extra=EXTRA)
        enc = {k: (v.to(self.device) if hasattr(v, "to") else v) for k, v in enc.items()}
        if "pixel_values" in enc and enc["pixel_values"].is_floating_point():
            enc["pixel_values"] = enc["pixel_values"].to(self.model.dtype)
        if "mm_token_type_ids" in enc and not _accepts(self.model, "mm_token_type_ids"):
            enc.pop("mm_token_type_ids")
        last = enc["attention_mask"].sum(dim=1) - 1
        backbone = getattr(self.model, "model", None)
        if backbone is None:  # no separate backbone: the full forward, then the two answer columns
            logits = self.model(**enc, use_cache=False).logits
            picked = logits[torch.arange(logits.shape[0], device=logits.device), last]
            return picked[:, [self.no_id, self.yes_id]].float().cpu().numpy().astype(np.float64)
        hidden = backbone(**enc, use_cache=False).last_hidden_state
        rows = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        answer = rows.to(self._answer_weight.dtype) @ self._answer_weight.T
        if self._answer_bias is not None:
            answer = answer + self._answer_bias
        return answer.float().cpu().numpy().astype(np.float64)


# ---------------------------------------------------------------------- processor loading


def load_page_processor(path: str, model_config: Any = None) -> Any:
    """The model's processor, built from its parts with transformers' PIL image backend.

    `AutoProcessor` would also build a video processor, which needs torchvision; a page
    reranker never uses video, so the processor is built from the tokenizer, the PIL image
    processor and the chat template alone.
    """
    transformers = require("transformers", extra=EXTRA)
    folder = Path(path)
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(path)
        image_processor = transformers.AutoImageProcessor.from_pretrained(path, backend="pil")
    except (OSError, ValueError) as exc:
        raise ConfigError(f"backend 'vlm-page': cannot load the processor from {path!r}: {_first_line(exc)}") from None
    processor_class = _processor_class(folder, model_config, transformers)
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
