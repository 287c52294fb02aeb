"""What every rerank-service backend shares (`cohere`, `voyage`, `jina`, `tei`, `vllm-rerank`,
`infinity`): the connection config `RemoteRerankConfig` and the `RemoteReranker` base.

`RemoteReranker` is real async: `arank` awaits the HTTP client on the caller's loop and
`rank_many` sends every query at once (requests interleave under `max_concurrency`); `rank` runs
the same coroutine on a private background loop, so it also works inside a running loop. The
service is asked for every candidate's score (`top_n` and `score_threshold` are applied here,
after every index was checked), a long list is split into sub-requests, and what the service
billed is summed into `RankedResults.usage` (keys as the service names them, e.g.
`search_units`, `total_tokens`, plus `requests`).

The api key is a `SecretStr`: it never appears in a repr, a log line, an exception message or a
`model_dump` / `model_dump_json` of the config (those show `**********`).
"""

from __future__ import annotations

import asyncio
import os
import threading
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator

from rankbridge.rerankers.core.base import Reranker, Scores
from rankbridge.rerankers.core.config import RerankerConfig
from rankbridge.rerankers.core.errors import CandidateError, ConfigError
from rankbridge.rerankers.core.types import Candidate, RankedResults
from rankbridge.rerankers.runtime.event_loop import BackgroundLoop
from rankbridge.rerankers.runtime.rerank_http import DIALECTS, Dialect, RequestSettings, RerankHTTPClient

# Fields only some APIs take: the dialect flag that says so, what the field is, who takes it.
_DIALECT_FEATURES = {
    "instruction": ("has_instruction", "instruction", "Voyage and vLLM take one"),
    "max_tokens_per_doc": ("has_max_tokens_per_doc", "per-document token limit", "Cohere v2 and vLLM take one"),
}


def base_url_field(default: str | None, example: str = "http://127.0.0.1:8080") -> Any:
    """The `base_url` field: the provider's public endpoint by default, or required (self-hosted)."""
    if default:
        return Field(
            default,
            description="The service's base URL: the provider's public endpoint by default; point it at "
            "a proxy or a compatible server (e.g. `rankbridge serve`) instead.",
        )
    return Field(description=f"The server's base URL, e.g. `{example}` (required: the service is self-hosted).")


def model_field(api: str, models: str) -> Any:
    """The required `model` field of a hosted API, naming some of its models."""
    return Field(description=f"{api} rerank model: {models}")


def max_documents_field(default: int, note: str = "") -> Any:
    return Field(
        default,
        ge=1,
        description=f"Documents per request; longer candidate lists are split into sub-requests that run "
        f"concurrently under `max_concurrency` and are mapped back by index.{note}",
    )


class RemoteRerankConfig(RerankerConfig):
    """Connection fields shared by every rerank-service backend."""

    model: str = Field(description="The service's model name (e.g. `rerank-v3.5`).")
    base_url: str = base_url_field(None)
    api_key: SecretStr | None = Field(
        None,
        description="Bearer token (a secret: shown as `**********`). Default: the provider's environment "
        "variable (`COHERE_API_KEY` then `CO_API_KEY`, `VOYAGE_API_KEY`, `JINA_API_KEY`; none for "
        "self-hosted servers).",
    )
    timeout: float = Field(60.0, gt=0, description="Seconds for one request attempt, until the whole answer is read.")
    max_retries: int = Field(
        2,
        ge=0,
        description="Retries of 408, 409, 429, 5xx, connection errors and timeouts (exponential backoff with "
        "jitter, honouring `retry-after-ms` / `Retry-After`); other 4xx are never retried.",
    )
    max_concurrency: int = Field(8, ge=1, description="Requests in flight at once, all queries and sub-requests together.")
    max_documents_per_request: int = max_documents_field(1000)
    max_tokens_per_doc: int | None = Field(
        None, ge=1, description="Per-document truncation in tokens, sent where the API has it (Cohere v2, vLLM); "
        "elsewhere a config error."
    )
    instruction: str | None = Field(
        None,
        description="An instruction for instruction-following rerankers, where the API takes one (Voyage: put "
        "in front of the query text; vLLM: its `instruction` field); elsewhere a config error.",
    )

    # The provider's environment variables for the api key, first found wins.
    api_key_env: ClassVar[tuple[str, ...]] = ()
    # The `DIALECTS` entry (default: the backend's name).
    dialect_name: ClassVar[str] = ""
    # Config fields sent as the dialect's `RequestSettings.options` (`truncate`, `raw_scores`).
    request_options: ClassVar[tuple[str, ...]] = ()
    NOT_SCORE_FIELDS: ClassVar[frozenset[str]] = RerankerConfig.NOT_SCORE_FIELDS | frozenset(
        {"api_key", "timeout", "max_retries", "max_concurrency", "max_documents_per_request"}
    )

    @model_validator(mode="before")
    @classmethod
    def _key_from_env(cls, data: Any) -> Any:
        # Runs before any field is checked, so a key given as a plain string is already a
        # SecretStr in every later validation message (pydantic repeats the input there).
        if not isinstance(data, dict):
            return data
        data = dict(data)
        key = data.get("api_key")
        if key is None or key == "":
            key = next((os.environ[name] for name in cls.api_key_env if os.environ.get(name)), None)
        if isinstance(key, str):
            key = SecretStr(key)
        data["api_key"] = key
        return data

    @field_validator("instruction", "max_tokens_per_doc")
    @classmethod
    def _api_takes_field(cls, value: Any, info: ValidationInfo) -> Any:
        flag, what, who = _DIALECT_FEATURES[info.field_name]
        if value is not None and not getattr(cls.dialect(), flag):
            raise ValueError(f"the {cls.dialect().api} rerank API has no {what}; leave `{info.field_name}` unset ({who})")
        return value

    @field_validator("max_documents_per_request")
    @classmethod
    def _within_hard_limit(cls, value: int) -> int:
        limit = cls.dialect().hard_max_documents
        if limit is not None and value > limit:
            raise ValueError(f"the {cls.dialect().api} rerank API takes at most {limit} documents per request")
        return value

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        return value.rstrip("/")

    @classmethod
    def dialect(cls) -> Dialect:
        """The API's dialect (what the field checks consult)."""
        return DIALECTS[cls.dialect_name or cls.model_fields["backend"].default]

    def request_dialect(self) -> Dialect:
        """The dialect requests are sent in (a backend with API versions picks one here)."""
        return type(self).dialect()

    def request_settings(self) -> RequestSettings:
        """Model, per-API fields and the `request_options` fields, sent with every request."""
        return RequestSettings(
            model=self.model,
            max_tokens_per_doc=self.max_tokens_per_doc,
            instruction=self.instruction,
            options={name: getattr(self, name) for name in self.request_options},
        )


@dataclass
class RemoteScores(Scores):
    """`Scores` plus what the service billed for them."""

    usage: dict[str, float] | None = None


class RemoteReranker(Reranker):
    """Base of the rerank-service backends. Subclasses set `name`, `config_class` (a
    `RemoteRerankConfig` subclass) and, for image-capable APIs, `accepts_images` and
    `encode_image`. Every service scores each document on its own: scores are pointwise."""

    config_class: ClassVar[type[RemoteRerankConfig]] = RemoteRerankConfig
    accepts_text = True
    accepts_images = False

    def __init__(self, config: Any = None, **kwargs: Any):
        super().__init__(config, **kwargs)
        cfg = self.config
        dialect = self.dialect
        if cfg.api_key is None and dialect.default_base_url and cfg.base_url == dialect.default_base_url.rstrip("/"):
            names = " or ".join(type(cfg).api_key_env) or "the provider's key variable"
            raise ConfigError(
                f"backend '{cfg.backend}' needs an api key for {cfg.base_url}: set {names} or pass api_key"
            )
        self._client: RerankHTTPClient | None = None
        self._client_lock = threading.Lock()
        self._loop = BackgroundLoop("rankbridge-remote-loop")

    def __repr__(self) -> str:
        fields = self.config.model_dump(exclude_defaults=True, exclude={"api_key"})
        shown = ", ".join(f"{k}={v!r}" for k, v in fields.items())
        key = ", api_key='**********'" if self.config.api_key is not None else ""
        return f"{type(self).__name__}({shown}{key})"

    @property
    def dialect(self) -> Dialect:
        return self.config.request_dialect()

    def scores_are_pointwise(self) -> bool:
        return True

    @property
    def client(self) -> RerankHTTPClient:
        """The HTTP client, built on first use."""
        with self._client_lock:
            if self._client is None:
                cfg = self.config
                self._client = RerankHTTPClient(
                    self.dialect,
                    base_url=cfg.base_url,
                    settings=cfg.request_settings(),
                    api_key=cfg.api_key.get_secret_value() if cfg.api_key is not None else None,
                    timeout=cfg.timeout,
                    max_retries=cfg.max_retries,
                    max_concurrency=cfg.max_concurrency,
                    max_documents_per_request=cfg.max_documents_per_request,
                )
            return self._client

    # ------------------------------------------------------------------ candidates

    def check_candidate(self, index: int, candidate: Candidate) -> None:
        if candidate.has_image and not self.accepts_images:
            raise CandidateError(
                f"candidate {index} is a page image, but the {self.dialect.api} rerank API takes text only; "
                "use backend 'jina' (jina-reranker-m0) or 'vllm-rerank' for images, or pass the page's text",
                index=index,
            )
        super().check_candidate(index, candidate)

    def encode_document(self, index: int, candidate: Candidate) -> Any:
        """What goes into the request's document list for this candidate."""
        if candidate.has_image and self.accepts_images:
            return self.encode_image(index, candidate)
        return candidate.text

    def encode_image(self, index: int, candidate: Candidate) -> Any:
        raise CandidateError(f"candidate {index}: backend '{self.config.backend}' cannot send images", index=index)

    # ------------------------------------------------------------------ scoring

    def _score_batch(self, queries: list[str], candidate_lists: list[list[Candidate]]) -> list[Scores]:
        return self._loop.run(self._ascore_batch(queries, candidate_lists))

    async def _ascore_batch(self, queries: list[str], candidate_lists: list[list[Candidate]]) -> list[Scores]:
        """Every query at once; the first failure cancels the others."""
        client = self.client
        documents = [[self.encode_document(i, c) for i, c in enumerate(cands)] for cands in candidate_lists]
        tasks = [asyncio.ensure_future(client.rerank(q, docs)) for q, docs in zip(queries, documents)]
        try:
            answers = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return [RemoteScores(a.scores, a.relevance, usage=a.usage) for a in answers]

    def _checked(self, scores: Any, n: int) -> Scores:
        # The base re-packs checked scores; keep the usage riding on them.
        checked = super()._checked(scores, n)  # type: ignore[misc]
        return RemoteScores(checked.scores, checked.relevance, usage=getattr(scores, "usage", None))

    def _finish(self, query, candidates, scores, top_n, score_threshold, fallback_reason=None) -> RankedResults:
        results = super()._finish(query, candidates, scores, top_n, score_threshold, fallback_reason)
        results.usage = getattr(scores, "usage", None)
        return results

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Close the connection pool and stop the private loop."""
        client = self._client
        if client is not None and self._loop.running:
            try:
                self._loop.run(client.aclose())
            except RuntimeError:
                pass
        if client is not None:
            client.close()
        self._loop.stop()

    async def aclose(self) -> None:
        """Close the pool of the running loop, then everything else."""
        if self._client is not None:
            await self._client.aclose()
        await asyncio.to_thread(self.close)


def image_reference(index: int, candidate: Candidate, *, data_url: bool) -> str:
    """A page candidate's image as the API takes it: an http(s) URL as given, else the image
    encoded as PNG, as a ``data:image/png;base64,`` URL (`data_url=True`) or bare base64."""
    image = candidate.image
    if isinstance(image, str) and image.strip().startswith(("http://", "https://")):
        return image.strip()
    if data_url and isinstance(image, str) and image.strip().startswith("data:image/"):
        return image.strip()
    from rankbridge.rerankers.pages.images import candidate_image, image_to_data_url

    url = image_to_data_url(candidate_image(index, candidate))
    return url if data_url else url.partition(",")[2]


__all__ = [
    "RemoteRerankConfig",
    "RemoteReranker",
    "RemoteScores",
    "base_url_field",
    "image_reference",
    "max_documents_field",
    "model_field",
]
