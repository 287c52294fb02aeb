"""`llm-yes-no`: a causal language model judges each (query, document) pair, and the score is
how much more it expects "yes" than "no" as the next token (the Qwen3-Reranker /
bge-reranker-v2-gemma / mxbai-rerank-v2 pattern).

    raw score  = logit(yes) - logit(no)        at the first answer position (`scoring: yes-minus-no`)
               = logit(yes)                    (`scoring: yes`, bge-reranker-v2-gemma's FlagEmbedding score)
    relevance  = sigmoid(raw score)            (= P(yes) / (P(yes) + P(no)) for yes-minus-no)

The prompt comes from one of three places:

- `preset:` a model card's recipe, written out as the card's code writes it: `qwen3-reranker`
  (system line, `<Instruct>: / <Query>: / <Document>:` block, assistant turn with the empty
  `<think>` block, yes/no), `bge-reranker-v2-gemma` (`<bos>A: query`, `B: passage`, its prompt,
  the logit of `Yes`), `mxbai-rerank-v2` (Qwen2.5 chat wrapper, `query:` / `document:`, its task
  prompt, `1` against `0`). A preset only supplies defaults: any field a user sets wins.
- `prompt_segments:` the same form by hand: pieces tokenized one by one, as the reference code
  tokenizes them, so a prompt that fits gets exactly the reference's token ids.
- otherwise the tokenizer's chat template (system: `instruction`; user: `user_template`; then the
  assistant turn opens), or plain text when there is none.

When a prompt is too long only the document is shortened (cut from its end): the query, the
instruction and the suffix that asks for the answer are never truncated.

Prefix sharing (`share_prefix`, on by default): the part of the prompt that every document of a
query shares (system line, instruction, query) is run once per query; every document continues
from its cached keys/values (the cache is expanded over the batch, the continuations right-padded
and read at their last real token). Scores equal the unshared computation (to float rounding);
time no longer pays for the prefix once per document. Without sharing, pairs are sorted by length
and run in batches with left padding, so the answer position is the last one of every row.

Local GGUF checkpoints work too: give `model` a ``.gguf`` file and it is converted once to a
cached safetensors folder (see `rankbridge.rerankers.runtime.gguf`).
"""

from __future__ import annotations

import inspect
import logging
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from rankbridge.rerankers.core.base import Reranker, Scores
from rankbridge.rerankers.core.calibration import sigmoid
from rankbridge.rerankers.core.config import RerankerConfig
from rankbridge.rerankers.core.errors import BackendError, ConfigError, QueryError, require
from rankbridge.rerankers.core.paths import resolve_model
from rankbridge.rerankers.core.types import Candidate
from rankbridge.rerankers.runtime.batching import distinct, plan_batches, progress_bar
from rankbridge.rerankers.runtime.devices import Device, resolve_device, torch_dtype

logger = logging.getLogger(__name__)

DEFAULT_INSTRUCTION = (
    "Judge whether the Document meets the requirements based on the Query. "
    'Note that the answer can only be "yes" or "no".'
)
_DOC_MARKER = "\x00RANKBRIDGE-DOCUMENT\x00"
_PLACEHOLDERS = {"instruction", "task", "query", "document", "user", "bos"}


@dataclass(frozen=True)
class LLMPreset:
    """A model card's prompt and scoring, as the field values `llm-yes-no` takes."""

    prompt_segments: tuple[str, ...]
    instruction: str
    yes_token: str
    no_token: str
    scoring: Literal["yes-minus-no", "yes"]
    user_template: str | None = None  # what a `{user}` piece stands for
    task: str | None = None
    task_format: str = "{task}"  # how a task is written into `{task}`; no task: ""
    reference: str = ""


QWEN3_SYSTEM = (
    "Judge whether the Document meets the requirements based on the Query and the Instruct provided. "
    'Note that the answer can only be "yes" or "no".'
)
QWEN3_TASK = "Given a web search query, retrieve relevant passages that answer the query"
BGE_GEMMA_PROMPT = (
    "Given a query A and a passage B, determine whether the passage contains an answer to the query "
    "by providing a prediction of either 'Yes' or 'No'."
)
MXBAI_TASK_PROMPT = (
    "You are a search relevance expert who evaluates how well documents match search queries. For each "
    "query-document pair, carefully analyze the semantic relationship between them, then provide your binary "
    "relevance judgment (0 for not relevant, 1 for relevant).\nRelevance:"
)
MXBAI_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

PRESETS: dict[str, LLMPreset] = {
    # Qwen/Qwen3-Reranker-*: prefix, the user block in one piece, suffix (model card's process_inputs).
    "qwen3-reranker": LLMPreset(
        prompt_segments=(
            "<|im_start|>system\n{instruction}<|im_end|>\n<|im_start|>user\n",
            "{user}",
            "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
        ),
        instruction=QWEN3_SYSTEM,
        user_template="<Instruct>: {task}\n<Query>: {query}\n<Document>: {document}",
        task=QWEN3_TASK,
        yes_token="yes",
        no_token="no",
        scoring="yes-minus-no",
        reference="Qwen/Qwen3-Reranker-0.6B model card",
    ),
    # BAAI/bge-reranker-v2-gemma: FlagEmbedding's BaseLLMReranker (bos + "A: q", sep, "B: p", sep, prompt).
    "bge-reranker-v2-gemma": LLMPreset(
        prompt_segments=("{bos}", "A: {query}", "\n", "B: {document}", "\n", "{instruction}"),
        instruction=BGE_GEMMA_PROMPT,
        yes_token="Yes",
        no_token="No",
        scoring="yes",
        reference="FlagEmbedding FlagLLMReranker",
    ),
    # mixedbread-ai/mxbai-rerank-*-v2: mxbai_rerank.MxbaiRerankV2.prepare_inputs / concat_input_ids.
    "mxbai-rerank-v2": LLMPreset(
        prompt_segments=(
            "<|im_start|>system\n" + MXBAI_SYSTEM + "<|im_end|>\n<|im_start|>user\n",
            "{task}query: {query}",
            "\n",
            "document: {document}",
            "\n",
            "{instruction}",
            "<|im_end|>\n<|im_start|>assistant\n",
        ),
        instruction=MXBAI_TASK_PROMPT,
        task_format="instruction: {task}\n",
        yes_token="1",
        no_token="0",
        scoring="yes-minus-no",
        reference="mxbai_rerank.MxbaiRerankV2",
    ),
}

PresetName = Literal["qwen3-reranker", "bge-reranker-v2-gemma", "mxbai-rerank-v2"]


class LLMYesNoConfig(RerankerConfig):
    """Configuration of the `llm-yes-no` backend."""

    NOT_SCORE_FIELDS: ClassVar[frozenset[str]] = RerankerConfig.NOT_SCORE_FIELDS | frozenset(
        {"batch_size", "num_threads", "show_progress_bar", "share_prefix"}
    )

    backend: Literal["llm-yes-no"] = "llm-yes-no"
    model: str = Field(
        description="A causal LM: a local folder, a name under $RANKBRIDGE_MODEL_DIR, a Hugging Face Hub id "
        "(from the local cache), or a local .gguf file (converted once to a cached safetensors folder)."
    )
    preset: PresetName | None = Field(
        None,
        description="A model family's recipe from its model card: `qwen3-reranker`, `bge-reranker-v2-gemma`, "
        "`mxbai-rerank-v2`. It sets the defaults of prompt_segments, instruction, user_template, task, yes_token, "
        "no_token and scoring; fields set here still override them.",
    )
    instruction: str = Field(
        DEFAULT_INSTRUCTION,
        description="The judging instruction: the system message (the `{instruction}` piece with a preset; "
        "a preset sets its own).",
    )
    user_template: str = Field(
        "<Query>: {query}\n<Document>: {document}",
        description="The user message; must contain {query} and {document}. With prompt segments, what a "
        "`{user}` piece stands for.",
    )
    task: str | None = Field(
        None,
        description="Text for the prompt's `{task}` placeholder (Qwen3-Reranker's <Instruct>, default "
        "\"Given a web search query, retrieve relevant passages that answer the query\"; mxbai-rerank-v2's "
        "optional instruction). Error when the prompt has no {task}.",
    )
    prompt_segments: list[str] | None = Field(
        None,
        description="The prompt as pieces, each tokenized on its own (as a model card's code does) and joined. "
        "Placeholders: {instruction}, {task}, {query}, {document}, {user} (user_template); a piece that is exactly "
        "{bos} is the tokenizer's BOS token. Exactly one piece holds {document}; only the document is shortened. "
        "Default: the preset's; without one, the chat template (or plain text) around user_template.",
    )
    yes_token: str = Field("yes", description="The answer text whose probability is the relevance; one token.")
    no_token: str = Field("no", description="The competing answer text; one token (unused by `scoring: yes`).")
    scoring: Literal["yes-minus-no", "yes"] = Field(
        "yes-minus-no",
        description="Raw score: `yes-minus-no` = logit(yes) - logit(no); `yes` = logit(yes) alone "
        "(bge-reranker-v2-gemma). Relevance = sigmoid(raw) either way.",
    )
    use_chat_template: bool | None = Field(
        None,
        description="Wrap the prompt in the tokenizer's chat template. Default: when it has one. Not used with "
        "prompt segments (a preset writes its own).",
    )
    share_prefix: bool = Field(
        True,
        description="Run the prompt part shared by a query's documents once and continue each document from its "
        "cached keys/values (same scores, less work); false runs every prompt whole.",
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


@dataclass
class _QueryPrompt:
    """One query's prompt around its documents, as token ids: head + cut(tok(doc_lead + document)) + tail."""

    head: list[int]
    doc_lead: str  # text tokenized together with the document (e.g. "B: "), kept whole when cutting
    lead_tokens: int
    tail: list[int]


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

        A model card's recipe (prompt, label tokens, scoring) is one field away:

        >>> qwen3 = load_reranker({"backend": "llm-yes-no", "model": str(smollm2_gguf_path()), "preset": "qwen3-reranker"})
        >>> qwen3.setting("task")
        'Given a web search query, retrieve relevant passages that answer the query'
    """

    name = "llm-yes-no"
    config_class = LLMYesNoConfig

    def __init__(self, config: LLMYesNoConfig | dict[str, Any] | None = None, **kwargs: Any):
        super().__init__(config, **kwargs)
        cfg: LLMYesNoConfig = self.config  # type: ignore[assignment]
        self.preset = PRESETS[cfg.preset] if cfg.preset else None
        self.segments = self._check_prompt()
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
        self.yes_id = self._single_token(self.setting("yes_token"), "yes_token")
        self.no_id = self._single_token(self.setting("no_token"), "no_token")
        self.chat = False
        if self.segments is None:
            self.chat = cfg.use_chat_template
            if self.chat is None:
                self.chat = bool(getattr(self.tokenizer, "chat_template", None))
            elif self.chat and not getattr(self.tokenizer, "chat_template", None):
                raise ConfigError(f"use_chat_template is true, but the tokenizer of '{cfg.model}' has no chat template")
        elif any(seg == "{bos}" for seg in self.segments) and self.tokenizer.bos_token_id is None:
            raise ConfigError(f"the prompt has a {{bos}} piece, but the tokenizer of '{cfg.model}' has no BOS token")
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
        parameters = inspect.signature(self.model.forward).parameters
        self._keep_last = "logits_to_keep" in parameters
        # transformers 5.2x renamed `past_key_values` to `cache`.
        self._cache_arg = "cache" if "cache" in parameters else "past_key_values"

    def model_fingerprint(self) -> str:
        """Content hash of the model folder (computed once): the score cache never serves another
        model's scores. Relevance is sigmoid of each pair's log-odds, so scores are pointwise."""
        if "_fingerprint" not in self.__dict__:
            from rankbridge.rerankers.core.cache import path_fingerprint

            self._fingerprint = path_fingerprint(self.model_path)
        return self._fingerprint

    def scores_are_pointwise(self) -> bool:
        return True

    # ------------------------------------------------------------------ settings

    def setting(self, name: str) -> Any:
        """The effective value of field `name`: what the config sets, else the preset's, else the default."""
        cfg: LLMYesNoConfig = self.config  # type: ignore[assignment]
        if self.preset is not None and name not in cfg.model_fields_set and hasattr(self.preset, name):
            value = getattr(self.preset, name)
            return list(value) if isinstance(value, tuple) else value
        return getattr(cfg, name)

    def _check_prompt(self) -> list[str] | None:
        """The prompt pieces with `{user}` expanded (None: chat template / plain text), checked."""
        cfg: LLMYesNoConfig = self.config  # type: ignore[assignment]
        segments = self.setting("prompt_segments")
        user = self.setting("user_template")
        origin = f"preset '{cfg.preset}'" if cfg.preset and "prompt_segments" not in cfg.model_fields_set else "prompt_segments"
        if segments is None:
            if "{query}" not in user or "{document}" not in user:
                raise ConfigError("field 'user_template' of backend 'llm-yes-no' must contain {query} and {document}")
            if cfg.task is not None and "{task}" not in user:
                raise ConfigError("field 'task' of backend 'llm-yes-no' is set, but user_template has no {task}")
            return None
        if "use_chat_template" in cfg.model_fields_set:
            raise ConfigError(
                f"field 'use_chat_template' of backend 'llm-yes-no' has no effect with {origin}: its pieces "
                "are the whole prompt"
            )
        if "user_template" in cfg.model_fields_set and not any("{user}" in s for s in segments):
            raise ConfigError(
                f"field 'user_template' of backend 'llm-yes-no' is not used by {origin} (no {{user}} piece); "
                "set prompt_segments to change that prompt"
            )
        if any("{user}" in s for s in segments) and not user:
            raise ConfigError(f"{origin} of backend 'llm-yes-no' has a {{user}} piece but user_template is empty")
        expanded = [s.replace("{user}", user) if "{user}" in s else s for s in segments]
        for piece in expanded:
            names = {f for _, f, _, _ in string.Formatter().parse(piece) if f is not None}
            unknown = names - _PLACEHOLDERS
            if unknown:
                raise ConfigError(
                    f"{origin} of backend 'llm-yes-no': unknown placeholder {{{sorted(unknown)[0]}}} in {piece!r} "
                    f"(allowed: {', '.join('{' + n + '}' for n in sorted(_PLACEHOLDERS))}; write {{{{ and }}}} for braces)"
                )
            if "{bos}" in piece and piece != "{bos}":
                raise ConfigError(f"{origin} of backend 'llm-yes-no': {{bos}} must be a piece of its own, got {piece!r}")
        holders = [s for s in expanded if "{document}" in s]
        if len(holders) != 1 or holders[0].count("{document}") != 1:
            raise ConfigError(f"{origin} of backend 'llm-yes-no' must hold {{document}} exactly once, in one piece")
        if not any("{query}" in s for s in expanded):
            raise ConfigError(f"{origin} of backend 'llm-yes-no' has no {{query}}")
        if "task" in cfg.model_fields_set and cfg.task is not None and not any("{task}" in s for s in expanded):
            raise ConfigError(f"field 'task' of backend 'llm-yes-no' is set, but {origin} has no {{task}}")
        return expanded

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
        """The prompt text before and after the document for `query` (the document goes between).

        With prompt segments these are the pieces joined; the token ids are those of each piece
        tokenized alone (see `encode`)."""
        if self.segments is not None:
            values = self._values(query)
            text = "".join("" if s == "{bos}" else s.replace("{document}", _DOC_MARKER).format(**values) for s in self.segments)
            before, _, after = text.partition(_DOC_MARKER)
            if any(s == "{bos}" for s in self.segments):
                before = (self.tokenizer.bos_token or "") + before
            return before, after
        cfg: LLMYesNoConfig = self.config  # type: ignore[assignment]
        user = cfg.user_template.format(query=query, document=_DOC_MARKER, task=cfg.task or "")
        if self.chat:
            messages = [{"role": "system", "content": cfg.instruction}, {"role": "user", "content": user}]
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:
            text = f"{cfg.instruction}\n\n{user}\nAnswer: "
        prefix, _, suffix = text.partition(_DOC_MARKER)
        return prefix, suffix

    def _values(self, query: str) -> dict[str, str]:
        task = self.setting("task")
        task_format = self.preset.task_format if self.preset is not None else "{task}"
        return {
            "instruction": self.setting("instruction"),
            "task": task_format.format(task=task) if task else "",
            "query": query,
            "bos": "",
        }

    def _ids(self, text: str, special: bool = False) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=special)["input_ids"]) if text else []

    def _query_prompt(self, query: str) -> _QueryPrompt:
        if self.segments is None:
            prefix, suffix = self.prompt_parts(query)
            # The space before the document belongs to the document's first token in BPE vocabularies.
            lead = " " if prefix.endswith(" ") else ""
            # A chat template writes its own special tokens; plain text gets the tokenizer's (BOS).
            head = self._ids(prefix.removesuffix(" "), special=not self.chat)
            return _QueryPrompt(head, lead, len(self._ids(lead)), self._ids(suffix))
        values = self._values(query)
        head: list[int] = []
        tail: list[int] = []
        lead = ""
        target = head
        for piece in self.segments:
            if piece == "{bos}":
                target.append(int(self.tokenizer.bos_token_id))
            elif "{document}" in piece:
                before, _, after = piece.partition("{document}")
                lead = before.format(**values)
                target = tail
                target.extend(self._ids(after.format(**values)))
            else:
                target.extend(self._ids(piece.format(**values)))
        return _QueryPrompt(head, lead, len(self._ids(lead)), tail)

    def encode(self, query: str, documents: list[str]) -> tuple[list[list[int]], int]:
        """Token ids of each (query, document) prompt, and how many documents were shortened."""
        cfg: LLMYesNoConfig = self.config  # type: ignore[assignment]
        parts = self._query_prompt(query)
        room = cfg.max_length - len(parts.head) - len(parts.tail)
        if room < parts.lead_tokens + 1:  # the query alone fills the window: the caller's to fix, never a fallback
            raise QueryError(
                f"the prompt without a document already has {len(parts.head) + len(parts.tail) + parts.lead_tokens} "
                f"tokens, more than max_length={cfg.max_length} allows; shorten the query or raise max_length"
            )
        bodies = self.tokenizer([parts.doc_lead + d for d in documents], add_special_tokens=False, verbose=False)["input_ids"]
        prompts, shortened = [], 0
        for body in bodies:
            if len(body) > room:
                shortened += 1
                body = body[:room]
            prompts.append([*parts.head, *body, *parts.tail])
        return prompts, shortened

    def _encode(self, queries: list[str], candidate_lists: list[list[Candidate]]) -> tuple[list[list[int]], int]:
        prompts: list[list[int]] = []
        shortened = 0
        for query, cands in zip(queries, candidate_lists):
            ids, cut = self.encode(query, [c.text or "" for c in cands])
            prompts.extend(ids)
            shortened += cut
        return prompts, shortened

    # ------------------------------------------------------------------ scoring

    def _score_batch(self, queries: list[str], candidate_lists: list[list[Candidate]]) -> list[Scores]:
        prompts, shortened = self._encode(queries, candidate_lists)
        if shortened:
            logger.info(
                "llm-yes-no: %d of %d documents shortened to fit max_length=%d",
                shortened, len(prompts), self.config.max_length,
            )
        # Equal prompts (a duplicate document, a query repeated in rank_many) run once, so they tie
        # exactly whatever batch they would have been padded in; each runs with its first query's group.
        first, slots = distinct([tuple(p) for p in prompts])
        groups: list[list[int]] = []
        start = 0
        for cands in candidate_lists:
            own = [slots[i] for i in range(start, start + len(cands)) if first[slots[i]] == i]
            if own:
                groups.append(own)
            start += len(cands)
        raw = self.score_prompts([prompts[i] for i in first], groups)[slots]
        out, start = [], 0
        for cands in candidate_lists:
            part = raw[start : start + len(cands)]
            start += len(cands)
            out.append(Scores(scores=part, relevance=sigmoid(part)))
        return out

    def score_prompts(self, prompts: list[list[int]], groups: list[list[int]] | None = None) -> np.ndarray:
        """Raw scores of token-id prompts. `groups` (index lists, one per query) are the prompts
        that may share a prefix; without them, or with `share_prefix` off, every prompt runs whole."""
        raw = np.empty(len(prompts), dtype=np.float64)
        whole: list[int] = []
        shared: list[tuple[list[int], int]] = []
        for group in groups if (groups and self.config.share_prefix) else [list(range(len(prompts)))]:
            common = _common_prefix([prompts[i] for i in group]) if groups and self.config.share_prefix and len(group) > 1 else 0
            if common > 0:
                shared.append((group, common))
            else:
                whole.extend(group)
        plans = [(group, common, plan_batches([len(prompts[i]) - common for i in group], batch_size=self.config.batch_size))
                 for group, common in shared]
        whole_batches = plan_batches([len(prompts[i]) for i in whole], batch_size=self.config.batch_size) if whole else []
        progress = progress_bar(len(whole_batches) + sum(len(p[2]) for p in plans), self.config.show_progress_bar,
                                "llm-yes-no batches")
        for batch in whole_batches:
            idx = [whole[b] for b in batch]
            raw[idx] = self._run_whole([prompts[i] for i in idx])
            progress.update(1)
        for group, common, batches in plans:
            cache = self._prefix_cache(prompts[group[0]][:common])
            for batch in batches:
                idx = [group[b] for b in batch]
                raw[idx] = self._run_continued(cache, common, [prompts[i][common:] for i in idx])
                progress.update(1)
        progress.close()
        return raw

    def _answer(self, logits: Any) -> np.ndarray:
        logits = logits.float()
        yes = logits[:, self.yes_id]
        score = yes if self.setting("scoring") == "yes" else yes - logits[:, self.no_id]
        return score.cpu().numpy().astype(np.float64)

    def _run_whole(self, rows: list[list[int]]) -> np.ndarray:
        """Left-padded batch: every prompt ends at the last column."""
        torch = require("torch", extra="llm")
        width = max(len(r) for r in rows)
        ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for row, prompt in enumerate(rows):
            ids[row, width - len(prompt) :] = prompt
            mask[row, width - len(prompt) :] = 1
        positions = np.clip(mask.cumsum(axis=1) - 1, 0, None)
        inputs = {
            "input_ids": torch.from_numpy(ids).to(self.device),
            "attention_mask": torch.from_numpy(mask).to(self.device),
            "position_ids": torch.from_numpy(positions).to(self.device),
        }
        if self._keep_last:
            inputs["logits_to_keep"] = 1
        with torch.inference_mode():
            logits = self.model(**inputs, use_cache=False).logits[:, -1, :]
        return self._answer(logits)

    def _prefix_cache(self, prefix: list[int]) -> list[tuple[Any, Any]]:
        """Keys and values of every layer for `prefix` (batch of one)."""
        torch = require("torch", extra="llm")
        ids = torch.tensor([prefix], dtype=torch.long, device=self.device)
        kwargs = {"logits_to_keep": 1} if self._keep_last else {}
        with torch.inference_mode():
            out = self.model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True, **kwargs)
        cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
        layers = getattr(cache, "layers", None)
        if not layers or not all(getattr(layer, "keys", None) is not None for layer in layers):
            raise BackendError(
                f"llm-yes-no: the model's cache ({type(cache).__name__}) does not hold per-layer keys and values; "
                "set share_prefix: false"
            )
        return [(layer.keys, layer.values) for layer in layers]

    def _run_continued(self, prefix_kv: list[tuple[Any, Any]], common: int, rests: list[list[int]]) -> np.ndarray:
        """Right-padded continuations of one cached prefix, read at each row's last real token."""
        torch = require("torch", extra="llm")
        from transformers import DynamicCache

        rows, width = len(rests), max(len(r) for r in rests)
        ids = np.full((rows, width), self.pad_id, dtype=np.int64)
        mask = np.zeros((rows, common + width), dtype=np.int64)
        mask[:, :common] = 1
        for row, rest in enumerate(rests):
            ids[row, : len(rest)] = rest
            mask[row, common : common + len(rest)] = 1
        positions = np.broadcast_to(np.arange(common, common + width, dtype=np.int64), (rows, width)).copy()
        last = torch.tensor([[len(r) - 1] for r in rests], dtype=torch.long, device=self.device)
        inputs = {
            "input_ids": torch.from_numpy(ids).to(self.device),
            "attention_mask": torch.from_numpy(mask).to(self.device),
            "position_ids": torch.from_numpy(positions).to(self.device),
            "use_cache": True,
        }
        if self._keep_last:
            inputs["logits_to_keep"] = last  # (rows, 1) positions: only each row's answer position
        with torch.inference_mode():
            # A fresh cache per batch (the forward pass appends to it), the prefix repeated over the rows.
            inputs[self._cache_arg] = DynamicCache(
                ddp_cache_data=[(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)) for k, v in prefix_kv],
                config=self.model.config,
            )
            logits = self.model(**inputs).logits
            logits = logits[:, 0, :] if self._keep_last else logits[torch.arange(rows, device=self.device), last[:, 0]]
        return self._answer(logits)

    def close(self) -> None:
        self.model = None


def _common_prefix(prompts: list[list[int]]) -> int:
    """Length of the token prefix all `prompts` share, leaving at least one token of each."""
    limit = min(len(p) for p in prompts) - 1
    first = prompts[0]
    n = 0
    while n < limit and all(p[n] == first[n] for p in prompts):
        n += 1
    return n


def _resolve_llm(reference: str) -> str:
    path = Path(resolve_model(reference))
    if path.is_file() and path.suffix.lower() == ".gguf":
        from rankbridge.rerankers.runtime.gguf import ensure_safetensors

        return str(ensure_safetensors(path))
    if path.is_file():
        raise ConfigError(f"model '{reference}' is a file but not a .gguf file; give a model folder")
    return str(path)


__all__ = ["DEFAULT_INSTRUCTION", "PRESETS", "LLMPreset", "LLMYesNoConfig", "LLMYesNoReranker"]
