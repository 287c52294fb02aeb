"""`llm-yes-no`: a causal language model judges each (query, document) pair, and the score is
how much more it expects "yes" than "no" as the next token (the Qwen3-Reranker /
bge-reranker-v2-gemma pattern).

    raw score  = logit("yes") - logit("no")        at the first answer position
    relevance  = P("yes") / (P("yes") + P("no"))   = sigmoid(raw score)

The prompt is the model's chat template when its tokenizer has one (system: the instruction;
user: query and document; then the assistant turn opens), else plain text. Each prompt is
``prefix + document + suffix``; when it is too long only the document is shortened: the query,
the instruction and the suffix that asks for the answer are never truncated. Pairs are sorted by
length and run in batches with left padding, so the answer position is the last one of every row.

Local GGUF checkpoints work too: give `model` a ``.gguf`` file and it is converted once to a
cached safetensors folder (see `rankbridge.rerankers.runtime.gguf`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from rankbridge.rerankers.core.base import Reranker, Scores
from rankbridge.rerankers.core.calibration import sigmoid
from rankbridge.rerankers.core.config import RerankerConfig
from rankbridge.rerankers.runtime.batching import plan_batches, progress_bar
from rankbridge.rerankers.runtime.devices import Device, resolve_device, torch_dtype
from rankbridge.rerankers.core.errors import BackendError, ConfigError, require
from rankbridge.rerankers.core.paths import resolve_model
from rankbridge.rerankers.core.types import Candidate

logger = logging.getLogger(__name__)

DEFAULT_INSTRUCTION = (
    "Judge whether the Document meets the requirements based on the Query. "
    'Note that the answer can only be "yes" or "no".'
)
_DOC_MARKER = "\x00RANKBRIDGE-DOCUMENT\x00"


class LLMYesNoConfig(RerankerConfig):
    """Configuration of the `llm-yes-no` backend."""

    backend: Literal["llm-yes-no"] = "llm-yes-no"
    model: str = Field(
        description="A causal LM: a local folder, a name under $RANKBRIDGE_MODEL_DIR, a Hugging Face Hub id "
        "(from the local cache), or a local .gguf file (converted once to a cached safetensors folder)."
    )
    instruction: str = Field(DEFAULT_INSTRUCTION, description="The judging instruction (the system message).")
    user_template: str = Field(
        "<Query>: {query}\n<Document>: {document}",
        description="The user message; must contain {query} and {document}.",
    )
    yes_token: str = Field("yes", description="The answer text whose probability is the relevance; one token.")
    no_token: str = Field("no", description="The competing answer text; one token.")
    use_chat_template: bool | None = Field(
        None, description="Wrap the prompt in the tokenizer's chat template. Default: when it has one."
    )
    device: Device = Field("auto", description="`auto` (cuda, then mps, then cpu), `cpu`, `cuda`, `cuda:<n>` or `mps`.")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="Weights' precision. `auto`: bfloat16 on CUDA, float32 elsewhere."
    )
    batch_size: int = Field(8, ge=1, description="Prompts per forward pass.")
    max_length: int = Field(
        1024, ge=32, description="Longest prompt in tokens; longer documents are shortened to fit."
    )
    num_threads: int | None = Field(None, ge=1, description="torch intra-op CPU threads (default: torch's choice).")
    show_progress_bar: bool | None = Field(
        None, description="Show a tqdm bar over batches. Default: only for long runs (20+ batches) on a terminal."
    )


class LLMYesNoReranker(Reranker):
    """Pointwise LLM reranker: relevance = P(yes) / (P(yes) + P(no)) for the next token.

    Example:
        >>> from rankbridge.rerankers import load_reranker
        >>> from rankbridge.rerankers.runtime.gguf import smollm2_gguf_path
        >>> reranker = load_reranker({"backend": "llm-yes-no", "model": str(smollm2_gguf_path())})
        >>> results = reranker.rank("capital of france", ["Paris is the capital of France.", "Bananas are yellow."])
        >>> sorted(results.indices)
        [0, 1]
        >>> all(0.0 <= r.relevance <= 1.0 for r in results)
        True
    """

    name = "llm-yes-no"
    config_class = LLMYesNoConfig

    def __init__(self, config: LLMYesNoConfig | dict[str, Any] | None = None, **kwargs: Any):
        super().__init__(config, **kwargs)
        cfg: LLMYesNoConfig = self.config  # type: ignore[assignment]
        if "{query}" not in cfg.user_template or "{document}" not in cfg.user_template:
            raise ConfigError("field 'user_template' of backend 'llm-yes-no' must contain {query} and {document}")
        self.model_path = _resolve_llm(cfg.model)
        torch = require("torch", extra="llm")
        transformers = require("transformers", extra="llm")
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(self.model_path)
        except OSError:
            raise ConfigError(
                f"model '{cfg.model}' not found: not a local folder or .gguf file, not under "
                "$RANKBRIDGE_MODEL_DIR, and not in the local Hugging Face cache"
            ) from None
        self.yes_id = self._single_token(cfg.yes_token, "yes_token")
        self.no_id = self._single_token(cfg.no_token, "no_token")
        self.chat = cfg.use_chat_template
        if self.chat is None:
            self.chat = bool(getattr(self.tokenizer, "chat_template", None))
        elif self.chat and not getattr(self.tokenizer, "chat_template", None):
            raise ConfigError(f"use_chat_template is true, but the tokenizer of '{cfg.model}' has no chat template")
        self.device = resolve_device(cfg.device, extra="llm")
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        dtype = torch_dtype(cfg.dtype, self.device, extra="llm")
        try:
            model = transformers.AutoModelForCausalLM.from_pretrained(self.model_path, dtype=dtype)
        except Exception as exc:
            raise BackendError(
                f"could not load causal LM weights from {self.model_path}: {type(exc).__name__}: {exc}"
            ) from None
        self.model = model.to(self.device).eval()
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.tokenizer.eos_token_id if self.tokenizer.eos_token_id is not None else 0
        import inspect

        self._keep_last = "logits_to_keep" in inspect.signature(self.model.forward).parameters

    def model_fingerprint(self) -> str:
        """Content hash of the model folder (computed once): the score cache never serves another
        model's scores. Relevance is sigmoid of each pair's log-odds, so scores are pointwise."""
        if "_fingerprint" not in self.__dict__:
            from rankbridge.rerankers.core.cache import path_fingerprint

            self._fingerprint = path_fingerprint(self.model_path)
        return self._fingerprint

    def scores_are_pointwise(self) -> bool:
        return True

    def _single_token(self, text: str, field: str) -> int:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise ConfigError(
                f"field '{field}' of backend 'llm-yes-no' is {text!r}, which this tokenizer splits into {len(ids)} "
                "tokens; it must be one token"
            )
        return int(ids[0])

    # ------------------------------------------------------------------ prompts

    def prompt_parts(self, query: str) -> tuple[str, str]:
        """The prompt text before and after the document for `query` (the document goes between)."""
        cfg: LLMYesNoConfig = self.config  # type: ignore[assignment]
        user = cfg.user_template.format(query=query, document=_DOC_MARKER)
        if self.chat:
            messages = [{"role": "system", "content": cfg.instruction}, {"role": "user", "content": user}]
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:
            text = f"{cfg.instruction}\n\n{user}\nAnswer: "
        prefix, _, suffix = text.partition(_DOC_MARKER)
        # The space before the document belongs to the document's first token in BPE vocabularies.
        prefix = prefix.removesuffix(" ")
        return prefix, suffix

    def _encode(self, queries: list[str], candidate_lists: list[list[Candidate]]) -> tuple[list[list[int]], int]:
        cfg: LLMYesNoConfig = self.config  # type: ignore[assignment]
        prompts: list[list[int]] = []
        shortened = 0
        for query, cands in zip(queries, candidate_lists):
            prefix, suffix = self.prompt_parts(query)
            # A chat template writes its own special tokens; plain text gets the tokenizer's (BOS).
            head = self.tokenizer(prefix, add_special_tokens=not self.chat)["input_ids"]
            tail = self.tokenizer(suffix, add_special_tokens=False)["input_ids"]
            room = cfg.max_length - len(head) - len(tail)
            if room < 1:
                raise ValueError(
                    f"the prompt without a document already has {len(head) + len(tail)} tokens, more than "
                    f"max_length={cfg.max_length}; shorten the query or raise max_length"
                )
            docs = self.tokenizer(
                [" " + (c.text or "") for c in cands], add_special_tokens=False, verbose=False
            )["input_ids"]
            for doc in docs:
                if len(doc) > room:
                    shortened += 1
                    doc = doc[:room]
                prompts.append([*head, *doc, *tail])
        return prompts, shortened

    # ------------------------------------------------------------------ scoring

    def _score_batch(self, queries: list[str], candidate_lists: list[list[Candidate]]) -> list[Scores]:
        prompts, shortened = self._encode(queries, candidate_lists)
        if shortened:
            logger.info(
                "llm-yes-no: %d of %d documents shortened to fit max_length=%d",
                shortened, len(prompts), self.config.max_length,
            )
        raw = self._run(prompts)
        out, start = [], 0
        for cands in candidate_lists:
            part = raw[start : start + len(cands)]
            start += len(cands)
            out.append(Scores(scores=part, relevance=sigmoid(part)))
        return out

    def _run(self, prompts: list[list[int]]) -> np.ndarray:
        torch = require("torch", extra="llm")
        lengths = np.array([len(p) for p in prompts], dtype=np.int64)
        batches = plan_batches(lengths, batch_size=self.config.batch_size)
        raw = np.empty(len(prompts), dtype=np.float64)
        progress = progress_bar(len(batches), self.config.show_progress_bar, "llm-yes-no batches")
        for idx in batches:
            width = int(lengths[idx[0]])
            ids = np.full((len(idx), width), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                k = len(prompts[i])
                ids[row, width - k :] = prompts[i]  # left padding: every prompt ends at the last column
                mask[row, width - k :] = 1
            positions = np.clip(mask.cumsum(axis=1) - 1, 0, None)
            inputs = {
                "input_ids": torch.from_numpy(ids).to(self.device),
                "attention_mask": torch.from_numpy(mask).to(self.device),
                "position_ids": torch.from_numpy(positions).to(self.device),
            }
            if self._keep_last:
                inputs["logits_to_keep"] = 1
            with torch.inference_mode():
                logits = self.model(**inputs).logits[:, -1, :].float()
            raw[idx] = (logits[:, self.yes_id] - logits[:, self.no_id]).cpu().numpy()
            progress.update(1)
        progress.close()
        return raw

    def close(self) -> None:
        self.model = None


def _resolve_llm(reference: str) -> str:
    path = Path(resolve_model(reference))
    if path.is_file() and path.suffix.lower() == ".gguf":
        from rankbridge.rerankers.runtime.gguf import ensure_safetensors

        return str(ensure_safetensors(path))
    if path.is_file():
        raise ConfigError(f"model '{reference}' is a file but not a .gguf file; give a model folder")
    return str(path)


__all__ = ["DEFAULT_INSTRUCTION", "LLMYesNoConfig", "LLMYesNoReranker"]
