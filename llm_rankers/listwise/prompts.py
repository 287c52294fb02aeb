"""Listwise prompts, kept as data files in `llm_rankers/prompts/*.yaml`, and fitting them into a
model's context.

A prompt file has `name`, `labels` (`numeric` for `[1]..[n]`, `alpha` for `[A]..`), `system`,
`prefix` (before the passages), `passage` (one line per passage, with `{label}` and `{text}`),
`suffix` (after the passages) and optionally `assistant_prefix` (text the answer is started with,
sent as a final assistant message that the server continues). `{query}` and `{num}` may appear
in `system`, `prefix` and `suffix`.

Built in: `rankgpt` (RankGPT's prompt, answer `[2] > [1] > ...`) and `first` (single-letter
labels for ranking by the first generated token's log-probabilities).

Passages are cut by tokens so the whole prompt fits: each to `max_passage_tokens`, and all of them
further, evenly, when the window would not fit `context_length` minus the answer's tokens. The
instructions and the query are never cut; if they alone do not fit, `fit_window` raises.

Example:
    >>> template = PromptTemplate.load("rankgpt")
    >>> messages = template.messages("capital of france", ["Paris is the capital.", "Bananas."])
    >>> [m["role"] for m in messages]
    ['system', 'user']
    >>> "[2] Bananas." in messages[1]["content"]
    True
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from rankbridge.rerankers.core.errors import BackendError, ConfigError
from rankbridge.rerankers.core.loader import MAX_SPEC_BYTES, check_spec_size
from rankbridge.rerankers.core.paths import plain_name

from rankbridge.llm_rankers.listwise.parser import ALPHA_LABELS, Labels, label_for
from rankbridge.llm_rankers.listwise.tokens import TokenCounter

# Tokens a chat template adds around each message (role markers, separators); a safe margin for
# the templates of common instruct models (SmolLM2's adds 5 per message).
CHAT_TOKENS_PER_MESSAGE = 8
_REQUIRED = ("name", "labels", "system", "prefix", "passage", "suffix")


@dataclass(frozen=True)
class PromptTemplate:
    """One listwise prompt. Load a built-in one by name or your own YAML file by path."""

    name: str
    labels: Labels
    system: str
    prefix: str
    passage: str
    suffix: str
    assistant_prefix: str = ""

    @classmethod
    def load(cls, name_or_path: str | os.PathLike) -> PromptTemplate:
        """A built-in prompt (`rankgpt`, `first`) or a YAML file with the same fields.

        Example:
            >>> PromptTemplate.load("first").labels
            'alpha'
        """
        import yaml

        text, where = _read_prompt(name_or_path)
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"prompt {where}: invalid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"prompt {where}: expected a mapping with fields {', '.join(_REQUIRED)}")
        check_spec_size(data, f"prompt {where}")  # YAML aliases must not expand into megabytes
        missing = [f for f in _REQUIRED if f not in data]
        unknown = sorted(set(data) - set(_REQUIRED) - {"assistant_prefix"})
        if missing or unknown:
            raise ConfigError(f"prompt {where}: missing fields {missing}, unknown fields {unknown}")
        if data["labels"] not in ("numeric", "alpha"):
            raise ConfigError(f"prompt {where}: labels must be 'numeric' or 'alpha', got {data['labels']!r}")
        template = cls(**{k: str(v) if k != "labels" else v for k, v in data.items()})
        template._check_fields(where)
        return template

    def max_window(self) -> int | None:
        """The most passages one window can label (None: no limit)."""
        return len(ALPHA_LABELS) if self.labels == "alpha" else None

    def messages(self, query: str, passages: list[str]) -> list[dict[str, Any]]:
        """The chat messages for one window (passages already cut to size)."""
        num = len(passages)
        body = "".join(
            self.passage.format(label=label_for(i, self.labels), text=" ".join(p.split())) for i, p in enumerate(passages)
        )
        user = self.prefix.format(query=query, num=num) + body + self.suffix.format(query=query, num=num)
        messages: list[dict[str, Any]] = []
        if self.system:
            messages.append({"role": "system", "content": self.system.format(query=query, num=num)})
        messages.append({"role": "user", "content": user})
        if self.assistant_prefix:
            messages.append({"role": "assistant", "content": self.assistant_prefix})
        return messages

    def fit_window(
        self,
        query: str,
        passages: list[str],
        counter: TokenCounter,
        *,
        max_passage_tokens: int,
        context_length: int,
        answer_tokens: int,
    ) -> tuple[list[dict[str, Any]], int]:
        """Messages for one window with every passage cut so the prompt fits the context.

        Returns the messages and the per-passage token budget that was applied.

        Raises:
            BackendError: the instructions and the query alone leave no room for the passages.
        """
        num = len(passages)
        skeleton = self.messages(query, [""] * num)
        fixed = sum(counter.count(m["content"]) for m in skeleton) + CHAT_TOKENS_PER_MESSAGE * len(skeleton)
        room = context_length - answer_tokens - fixed
        budget = min(max_passage_tokens, room // max(num, 1))
        if budget < 1:
            raise BackendError(
                f"the listwise prompt for {num} passages needs {fixed} tokens before any passage text and "
                f"{answer_tokens} for the answer, more than context_length={context_length}; use a smaller "
                "window_size, a shorter query, or a model with a longer context"
            )
        cut = [counter.truncate(" ".join(p.split()), budget) for p in passages]
        return self.messages(query, cut), budget

    def _check_fields(self, where: str) -> None:
        probes = {"system": self.system, "prefix": self.prefix, "suffix": self.suffix}
        for field_name, text in probes.items():
            try:
                text.format(query="q", num=1)
            except (KeyError, IndexError, ValueError) as exc:
                raise ConfigError(f"prompt {where}: field '{field_name}' may use only {{query}} and {{num}} ({exc})") from None
        try:
            self.passage.format(label="1", text="t")
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(f"prompt {where}: field 'passage' may use only {{label}} and {{text}} ({exc})") from None


def builtin_prompts() -> list[str]:
    """Names of the prompts shipped with rankbridge."""
    folder = resources.files("rankbridge.llm_rankers.listwise") / "templates"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _read_prompt(name_or_path: str | os.PathLike) -> tuple[str, str]:
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise ConfigError(f"prompt file not found: {path}")
        size = path.stat().st_size
        if size > MAX_SPEC_BYTES:
            raise ConfigError(f"prompt file {path} is {size} bytes; a prompt file is at most {MAX_SPEC_BYTES} bytes")
        return path.read_text(encoding="utf-8"), str(path)
    plain_name(text, "prompt")  # a built-in prompt's name joins a package folder: never a path
    resource = resources.files("rankbridge.llm_rankers.listwise") / "templates" / f"{text}.yaml"
    if not resource.is_file():
        raise ConfigError(f"unknown prompt '{text}'; built-in prompts: {', '.join(builtin_prompts())}, or a path to a YAML file")
    return resource.read_text(encoding="utf-8"), f"'{text}'"


__all__ = ["PromptTemplate", "builtin_prompts"]
