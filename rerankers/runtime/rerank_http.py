"""One async HTTP client for every rerank API, with a `Dialect` per API.

A `Dialect` knows one API's shape: its route, request builder, response parser (to
`(index, score, relevance)` items and usage), error-body parser and limits (documents per
request, Voyage's token total). `RerankHTTPClient` does everything else once, for all of them:

- pooled connections (`httpx.AsyncClient`, imported lazily; one pool per event loop) and the
  retry loop, both from `runtime/http_retry.py` (the chat client of `llm_rankers` uses them too);
- splitting a candidate list past `max_documents_per_request` (and a dialect's token total) into
  sub-requests that run concurrently, at most `max_concurrency` requests in flight per client;
- retries of 408, 409, 429, 5xx, connection errors and timeouts, with exponential backoff and
  jitter, honouring `retry-after-ms` and then `Retry-After`; other 4xx are never retried;
- answer checking: every index exactly once, in range, with a finite score, else a
  `BackendError` naming the API and the problem; an HTML page or a truncated body is a clear
  `BackendError` with the HTTP status and the service's own message where it sent one.

The api key travels only in the `Authorization` header; it is redacted from every message.

Example:
    >>> client = RerankHTTPClient(DIALECTS["cohere"], base_url="https://api.cohere.com",
    ...                           settings=RequestSettings(model="rerank-v3.5"), api_key="k")
    >>> client.url
    'https://api.cohere.com/v2/rerank'
    >>> plan_requests(2500, max_documents=1000)
    [(0, 1000), (1000, 2000), (2000, 2500)]
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import threading
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ValidationError

from rankbridge.rerankers.core.errors import BackendError, require
from rankbridge.rerankers.runtime import rerank_apis as apis
from rankbridge.rerankers.runtime.http_retry import GaveUp, LoopPools, Retryable, RetryPolicy, retry_after_seconds, send, with_retries

logger = logging.getLogger(__name__)

T = TypeVar("T")

EXTRA = "remote"
RETRY_STATUSES = frozenset({408, 409, 429})  # and every 5xx


@dataclass(frozen=True)
class RequestSettings:
    """What goes into every request besides the query and documents.

    Attributes:
        model: the service's model name (None: the server's default; not sent).
        max_tokens_per_doc: per-document truncation, for dialects that have it.
        instruction: for dialects that take one (Voyage: put in front of the query; vLLM: a field).
        options: dialect-specific switches: `truncate` (TEI, vLLM), `raw_scores` (TEI).
    """

    model: str | None = None
    max_tokens_per_doc: int | None = None
    instruction: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class ParsedAnswer:
    """One response: `(index, score, relevance)` per result (index into the request's
    documents, as the service sent it) and the usage it reported."""

    items: list[tuple[int, float, float]]
    usage: dict[str, float] = field(default_factory=dict)


@dataclass
class RerankAnswer:
    """Every document's raw score and relevance, in input order, and the summed usage."""

    scores: list[float]
    relevance: list[float]
    usage: dict[str, float]


# ------------------------------------------------------------------------------------- dialects


class Dialect:
    """One rerank API's shape. Subclasses set the class attributes and implement
    `build_request`. The default `parse_response` reads `response_model` (the items under
    `results_field`, each `relevance_score` being both score and relevance) and the usage
    fields named in `usage_fields`; `error_message` reads the API's error body
    (FastAPI's `{"detail": ...}` first where `detail_errors`)."""

    name: ClassVar[str] = ""
    api: ClassVar[str] = ""  # how messages name the service
    route: ClassVar[str] = "/rerank"
    default_base_url: ClassVar[str | None] = None
    default_max_documents: ClassVar[int] = 1000
    hard_max_documents: ClassVar[int | None] = None  # the service rejects more in one request
    max_total_tokens: ClassVar[int | None] = None  # Voyage: query tokens x documents + document tokens
    has_max_tokens_per_doc: ClassVar[bool] = False
    has_instruction: ClassVar[bool] = False
    accepts_images: ClassVar[bool] = False
    response_model: ClassVar[type[BaseModel]]
    results_field: ClassVar[str] = "results"
    usage_fields: ClassVar[tuple[str, ...]] = ()  # read from the response's `usage` object
    detail_errors: ClassVar[bool] = False

    def url(self, base_url: str) -> str:
        return base_url.rstrip("/") + self.route

    def build_request(self, query: str, documents: Sequence[Any], settings: RequestSettings) -> dict[str, Any]:
        raise NotImplementedError

    def parse_response(self, body: Any, headers: Mapping[str, str], settings: RequestSettings) -> ParsedAnswer:
        answer = self._model(self.response_model, body)
        return ParsedAnswer(_same(getattr(answer, self.results_field)), self.usage(answer))

    def usage(self, answer: Any) -> dict[str, float]:
        """What the parsed answer says was billed (`usage_fields` of its `usage`)."""
        usage = getattr(answer, "usage", None)
        return _usage(**{name: getattr(usage, name) for name in self.usage_fields}) if usage else {}

    def error_message(self, body: Any) -> str | None:
        """The service's own message from an error body (None if the body has none)."""
        return (self.detail_errors and detail_message(body)) or generic_error_message(body)

    def _model(self, model_class: type[BaseModel], body: Any) -> Any:
        try:
            return model_class.model_validate(body)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in item.get('loc', ())) or 'body'}: {item.get('msg')}"
                for item in exc.errors()[:3]
            )
            raise BackendError(f"{self.api} answered with an unexpected body ({problems}): {snippet(body)}") from None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _put(payload: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        payload[key] = value


def _same(items: Sequence[Any]) -> list[tuple[int, float, float]]:
    # Services whose relevance_score is already a probability: score and relevance are that number.
    return [(int(r.index), float(r.relevance_score), float(r.relevance_score)) for r in items]


def _sigmoid(x: float) -> float:
    if not math.isfinite(x):
        return x if math.isnan(x) else float(x > 0)
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def _usage(**values: Any) -> dict[str, float]:
    return {k: float(v) for k, v in values.items() if v is not None}


class CohereV2Dialect(Dialect):
    """Cohere `/v2/rerank`. relevance = Cohere's `relevance_score` (a probability in [0, 1])."""

    name = "cohere"
    api = "Cohere"
    route = "/v2/rerank"
    default_base_url = "https://api.cohere.com"
    default_max_documents = apis.COHERE_RECOMMENDED_DOCUMENTS
    hard_max_documents = apis.COHERE_MAX_DOCUMENTS
    has_max_tokens_per_doc = True
    response_model = apis.CohereV2RerankResponse

    def url(self, base_url: str) -> str:
        # `cohere.ClientV2(base_url=...)` takes a bare origin; accept one ending in /v1 or /v2 too.
        base = re.sub(r"/v[12]/?$", "", base_url.rstrip("/"))
        return base + self.route

    def build_request(self, query, documents, settings):
        payload: dict[str, Any] = {"model": settings.model, "query": query, "documents": list(documents)}
        _put(payload, "max_tokens_per_doc", settings.max_tokens_per_doc)
        return payload

    def usage(self, answer):
        billed = answer.meta.billed_units if answer.meta is not None else None
        if billed is None:
            return {}
        return _usage(search_units=billed.search_units, input_tokens=billed.input_tokens, output_tokens=billed.output_tokens)

    def error_message(self, body):
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            return body["message"]
        return super().error_message(body)


class CohereV1Dialect(CohereV2Dialect):
    """Cohere `/v1/rerank` (documents as strings; no `max_tokens_per_doc`)."""

    route = "/v1/rerank"
    has_max_tokens_per_doc = False
    response_model = apis.CohereV1RerankResponse

    def build_request(self, query, documents, settings):
        payload: dict[str, Any] = {"query": query, "documents": list(documents)}
        _put(payload, "model", settings.model)
        return payload


class VoyageDialect(Dialect):
    """Voyage `/v1/rerank` (`top_k`, `data[]`). relevance = Voyage's `relevance_score`. An
    instruction goes in front of the query text (rerank-2.5 follows instructions given so)."""

    name = "voyage"
    api = "Voyage"
    default_base_url = "https://api.voyageai.com/v1"
    default_max_documents = apis.VOYAGE_MAX_DOCUMENTS
    hard_max_documents = apis.VOYAGE_MAX_DOCUMENTS
    max_total_tokens = apis.VOYAGE_MAX_TOTAL_TOKENS
    has_instruction = True
    response_model = apis.VoyageRerankResponse
    results_field = "data"
    usage_fields = ("total_tokens",)
    detail_errors = True

    def build_request(self, query, documents, settings):
        return {
            "query": voyage_query(query, settings.instruction),
            "documents": list(documents),
            "model": settings.model,
            "truncation": bool(settings.options.get("truncate", True)),
        }


def voyage_query(query: str, instruction: str | None) -> str:
    """The query text Voyage gets: the instruction, a newline, the query."""
    return f"{instruction.strip()}\n{query}" if instruction else query


class JinaDialect(Dialect):
    """Jina `/v1/rerank`. relevance = Jina's `relevance_score`. Documents may be `{"image": ...}`
    (jina-reranker-m0). All scores are asked for (`top_n` = the number of documents) and
    documents are not echoed back (`return_documents: false`)."""

    name = "jina"
    api = "Jina"
    default_base_url = "https://api.jina.ai/v1"
    default_max_documents = apis.JINA_MAX_DOCUMENTS
    accepts_images = True
    response_model = apis.JinaRerankResponse
    usage_fields = ("total_tokens",)
    detail_errors = True

    def build_request(self, query, documents, settings):
        return {
            "model": settings.model,
            "query": query,
            "documents": list(documents),
            "top_n": len(documents),
            "return_documents": False,
        }


class TEIDialect(Dialect):
    """Hugging Face text-embeddings-inference `/rerank` (`texts`, a bare array back). relevance =
    TEI's `score`, the sigmoid of the model's logit (`raw_scores: false`). With option
    `raw_scores` the score is the logit and relevance its sigmoid. Option `truncate` (default
    true) lets TEI cut pairs past the model's length instead of answering 413."""

    name = "tei"
    api = "TEI"
    default_max_documents = apis.TEI_MAX_CLIENT_BATCH_SIZE
    response_model = apis.TEIRerankResponse

    def build_request(self, query, documents, settings):
        return {
            "query": query,
            "texts": list(documents),
            "raw_scores": bool(settings.options.get("raw_scores", False)),
            "return_text": False,
            "truncate": bool(settings.options.get("truncate", True)),
        }

    def parse_response(self, body, headers, settings):
        ranks = self._model(self.response_model, body).root
        tokens = headers.get(apis.TEI_USAGE_HEADER)
        usage = {}
        if tokens is not None:
            try:
                usage = {"compute_tokens": float(tokens)}
            except ValueError:
                pass
        raw = bool(settings.options.get("raw_scores", False))
        items = [(int(r.index), float(r.score), _sigmoid(r.score) if raw else float(r.score)) for r in ranks]
        return ParsedAnswer(items, usage)


class VLLMDialect(Dialect):
    """vLLM's rerank route (`/v1/rerank`; `/rerank` when the base URL already ends in `/v1`).
    relevance = vLLM's `relevance_score` (the sigmoid of a 1-label cross-encoder's logit).
    Option `truncate` (default true) sends `truncate_prompt_tokens: -1` so a pair past the model's
    context is cut to it instead of answering 400. Documents may be
    `{"content": [{"type": "image_url", ...}]}`."""

    name = "vllm-rerank"
    api = "vLLM"
    route = "/v1/rerank"
    default_max_documents = apis.VLLM_MAX_DOCUMENTS
    has_max_tokens_per_doc = True
    has_instruction = True
    accepts_images = True
    response_model = apis.VLLMRerankResponse
    usage_fields = ("prompt_tokens", "total_tokens")

    def url(self, base_url: str) -> str:
        base = base_url.rstrip("/")
        return base + ("/rerank" if base.endswith("/v1") or base.endswith("/v2") else self.route)

    def build_request(self, query, documents, settings):
        payload: dict[str, Any] = {"query": query, "documents": list(documents)}
        _put(payload, "model", settings.model)
        if settings.options.get("truncate", True):
            payload["truncate_prompt_tokens"] = -1
        _put(payload, "max_tokens_per_doc", settings.max_tokens_per_doc)
        _put(payload, "instruction", settings.instruction)
        return payload


class InfinityDialect(Dialect):
    """infinity-emb `/rerank`. relevance = Infinity's `relevance_score` (sigmoid of the logit)."""

    name = "infinity"
    api = "Infinity"
    default_max_documents = apis.INFINITY_MAX_DOCUMENTS
    response_model = apis.InfinityRerankResponse
    usage_fields = ("prompt_tokens", "total_tokens")

    def build_request(self, query, documents, settings):
        payload: dict[str, Any] = {"query": query, "documents": list(documents), "return_documents": False}
        _put(payload, "model", settings.model)
        return payload


DIALECTS: dict[str, Dialect] = {
    "cohere": CohereV2Dialect(),
    "cohere-v1": CohereV1Dialect(),
    "voyage": VoyageDialect(),
    "jina": JinaDialect(),
    "tei": TEIDialect(),
    "vllm-rerank": VLLMDialect(),
    "infinity": InfinityDialect(),
}


# ------------------------------------------------------------------------------------- error bodies


def detail_message(body: Any) -> str | None:
    """FastAPI-style `{"detail": str | [{"loc", "msg"}, ...]}` (Voyage, Jina)."""
    if not isinstance(body, dict) or "detail" not in body:
        return None
    detail = body["detail"]
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                loc = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
                parts.append(f"{loc}: {item.get('msg')}" if loc else str(item.get("msg")))
            else:
                parts.append(str(item))
        return "; ".join(parts)
    return json.dumps(detail)[:300]


def generic_error_message(body: Any) -> str | None:
    """The message of any known error body: `message`, `detail`, `error` (a string, with
    `error_type`) or `error.message` (vLLM, OpenAI, Infinity)."""
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    if isinstance(error, str):
        kind = body.get("error_type")
        return f"{error} ({kind})" if kind else error
    if isinstance(body.get("message"), str):
        return body["message"]
    return detail_message(body)


_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def describe_body(dialect: Dialect, status: int, text: str, content_type: str) -> str:
    """`HTTP <status>: <the service's message>`, or what the body was when it is not JSON."""
    stripped = text.lstrip()
    if "html" in content_type.lower() or stripped[:1] == "<":
        title = _TITLE.search(text)
        shown = f" ({' '.join(title.group(1).split())[:120]})" if title else ""
        return f"HTTP {status} with an HTML page{shown} instead of a JSON body"
    if not stripped:
        return f"HTTP {status} with an empty body"
    try:
        body = json.loads(text)
    except ValueError:
        return f"HTTP {status}: {snippet(text)}"
    message = dialect.error_message(body)
    return f"HTTP {status}: {message}" if message else f"HTTP {status}: {snippet(text)}"


def snippet(value: Any, limit: int = 200) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


# ------------------------------------------------------------------------------------- planning


def estimate_tokens(text: Any) -> int:
    """A deliberately high token count for a text (UTF-8 bytes / 3, at least 1): splitting on it
    keeps a request under a service's token total without the service's tokenizer."""
    if not isinstance(text, str):
        return 1
    return max(1, math.ceil(len(text.encode("utf-8")) / 3))


def plan_requests(
    num_documents: int,
    *,
    max_documents: int,
    max_total_tokens: int | None = None,
    query_tokens: int = 0,
    document_tokens: Sequence[int] | None = None,
) -> list[tuple[int, int]]:
    """Cut `range(num_documents)` into consecutive `(start, stop)` spans of at most
    `max_documents`, each within `max_total_tokens` counted as Voyage does
    (query tokens x documents + the documents' tokens). A document over the total alone gets a
    span of its own (the service truncates it).

    Example:
        >>> plan_requests(5, max_documents=2)
        [(0, 2), (2, 4), (4, 5)]
        >>> plan_requests(4, max_documents=10, max_total_tokens=100, query_tokens=10, document_tokens=[40, 40, 5, 90])
        [(0, 2), (2, 3), (3, 4)]
    """
    if max_documents < 1:
        raise ValueError(f"max_documents must be >= 1, got {max_documents}")
    spans: list[tuple[int, int]] = []
    start, used = 0, 0
    for i in range(num_documents):
        cost = query_tokens + (document_tokens[i] if document_tokens is not None else 0)
        full = i - start >= max_documents
        over = max_total_tokens is not None and i > start and used + cost > max_total_tokens
        if full or over:
            spans.append((start, i))
            start, used = i, 0
        used += cost
    if num_documents:
        spans.append((start, num_documents))
    return spans


def check_answer(api: str, items: Sequence[tuple[int, float, float]], num_documents: int) -> None:
    """Every index in `range(num_documents)` exactly once, each with a finite score and
    relevance; else a `BackendError` naming `api` and the problem."""
    seen: set[int] = set()
    for index, score, relevance in items:
        if not 0 <= index < num_documents:
            raise BackendError(f"{api} returned index {index}, out of range for {num_documents} documents")
        if index in seen:
            raise BackendError(f"{api} returned index {index} more than once")
        if not (math.isfinite(score) and math.isfinite(relevance)):
            raise BackendError(f"{api} returned a non-finite score ({score}) for document {index}")
        seen.add(index)
    if len(seen) != num_documents:
        missing = sorted(set(range(num_documents)) - seen)
        shown = ", ".join(str(i) for i in missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise BackendError(
            f"{api} returned {len(seen)} results for {num_documents} documents (missing: {shown})"
        )


# ------------------------------------------------------------------------------------- the client


@dataclass
class ClientStats:
    """Running totals of one client: HTTP attempts that got an answer, retries, failures."""

    requests: int = 0
    retries: int = 0
    failures: int = 0


class RerankHTTPClient:
    """Async client of one rerank service in one dialect.

    Args:
        dialect: the API's `Dialect` (see `DIALECTS`).
        base_url: the service's base URL (what `Dialect.url` appends the route to).
        settings: model and options sent with every request.
        api_key: sent as `Authorization: Bearer ...` when given; never shown anywhere.
        timeout: seconds for one attempt, from sending the request to reading the whole answer.
        max_retries: retries after the first attempt.
        max_concurrency: requests in flight at once (per event loop), all queries together.
        max_documents_per_request: documents in one request (default: the dialect's).
        backoff / max_backoff: first retry delay in seconds, doubled each retry, jittered, capped.
    """

    def __init__(
        self,
        dialect: Dialect,
        *,
        base_url: str,
        settings: RequestSettings | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
        max_concurrency: int = 8,
        max_documents_per_request: int | None = None,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        headers: Mapping[str, str] | None = None,
    ):
        require("httpx", extra=EXTRA)
        self.dialect = dialect
        self.base_url = base_url
        self.url = dialect.url(base_url)
        self.settings = settings or RequestSettings()
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.max_concurrency = int(max_concurrency)
        self.max_documents_per_request = int(max_documents_per_request or dialect.default_max_documents)
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self._secret = api_key or None
        self._headers = {"Accept": "application/json", "User-Agent": "rankbridge"}
        self._headers.update(headers or {})
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._pools = LoopPools()
        self._lock = threading.Lock()
        self.stats = ClientStats()

    def __repr__(self) -> str:
        return f"RerankHTTPClient(api={self.dialect.api!r}, url={self.url!r})"

    # ------------------------------------------------------------------ public

    async def rerank(self, query: str, documents: Sequence[Any]) -> RerankAnswer:
        """Scores for every document, in input order, and the usage summed over sub-requests."""
        n = len(documents)
        if n == 0:
            return RerankAnswer([], [], {})
        spans = self.plan(query, documents)
        if len(spans) > 1:
            logger.debug("%s: %d documents in %d sub-requests", self.dialect.api, n, len(spans))
        answers = await _all_or_cancel([self._rerank_span(query, documents, a, b) for a, b in spans])
        scores = [math.nan] * n
        relevance = [math.nan] * n
        usage: dict[str, float] = {}
        for (start, _), parsed in zip(spans, answers):
            for index, score, rel in parsed.items:
                scores[start + index] = score
                relevance[start + index] = rel
            for key, value in parsed.usage.items():
                usage[key] = usage.get(key, 0.0) + value
        usage["requests"] = float(len(spans))
        return RerankAnswer(scores, relevance, usage)

    def plan(self, query: str, documents: Sequence[Any]) -> list[tuple[int, int]]:
        """The `(start, stop)` spans of the sub-requests `rerank` sends."""
        limit = self.dialect.max_total_tokens
        return plan_requests(
            len(documents),
            max_documents=self.max_documents_per_request,
            max_total_tokens=limit,
            query_tokens=estimate_tokens(self.dialect.build_request(query, [], self.settings).get("query")) if limit else 0,
            document_tokens=[estimate_tokens(d) for d in documents] if limit else None,
        )

    async def aclose(self) -> None:
        """Close the connection pool of the running event loop."""
        await self._pools.aclose()

    def close(self) -> None:
        """Forget every pool (pools of running loops are closed by `aclose` on that loop)."""
        self._pools.clear()

    # ------------------------------------------------------------------ one sub-request

    async def _rerank_span(self, query: str, documents: Sequence[Any], start: int, stop: int) -> ParsedAnswer:
        part = documents[start:stop]
        payload = self.dialect.build_request(query, part, self.settings)
        body, headers = await self._post(payload, len(part))
        parsed = self.dialect.parse_response(body, headers, self.settings)
        check_answer(self.dialect.api, parsed.items, len(part))
        return parsed

    async def _post(self, payload: dict[str, Any], num_documents: int) -> tuple[Any, Mapping[str, str]]:
        pool = self._pools.get(headers=self._headers, timeout=self.timeout, max_concurrency=self.max_concurrency)
        policy = RetryPolicy(self.max_retries, self.backoff, self.max_backoff)
        try:
            answer, _ = await with_retries(
                lambda http: self._attempt(http, payload),
                pool=pool,
                timeout=self.timeout,
                policy=policy,
                label=f"{self.dialect.api} {self.url}",
                redact=self._redact,
                on_retry=self._count_retry,
                log=logger,
            )
        except GaveUp as exc:
            with self._lock:
                self.stats.failures += 1
            raise BackendError(self._redact(
                f"{self.dialect.api} rerank request to {self.url} ({num_documents} documents) failed after "
                f"{exc.attempts} attempt(s): {exc.reason}"
            )) from None
        return answer

    def _count_retry(self) -> None:
        with self._lock:
            self.stats.retries += 1

    async def _attempt(self, http: Any, payload: dict[str, Any]) -> tuple[Any, Mapping[str, str]]:
        api = self.dialect.api
        response = await send(http, "POST", self.url, payload)
        with self._lock:
            self.stats.requests += 1
        status = response.status_code
        content_type = response.headers.get("content-type", "")
        if status in RETRY_STATUSES or status >= 500:
            raise Retryable(describe_body(self.dialect, status, response.text, content_type), retry_after_seconds(response.headers))
        if status >= 400:
            hint = " (check the api key)" if status in (401, 403) else ""
            raise BackendError(self._redact(
                f"{api} rejected the rerank request to {self.url}{hint}: "
                f"{describe_body(self.dialect, status, response.text, content_type)}"
            ))
        text = response.text
        if "html" in content_type.lower() or text.lstrip()[:1] == "<":
            raise BackendError(f"{api} answered {describe_body(self.dialect, status, text, content_type)}")
        try:
            return json.loads(text), response.headers
        except ValueError as exc:
            raise BackendError(self._redact(
                f"{api} answered HTTP {status} with a body that is not valid JSON (truncated?): "
                f"{exc.msg} at character {exc.pos} of {len(text)}: {snippet(text, 120)}"
            )) from None

    def _redact(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text


async def _all_or_cancel(coros: Sequence[Coroutine[Any, Any, T]]) -> list[T]:
    """Run every coroutine concurrently; on the first failure cancel the rest and raise it."""
    if len(coros) == 1:
        return [await coros[0]]
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise task.exception()
    return [task.result() for task in tasks]


__all__ = [
    "DIALECTS",
    "ClientStats",
    "CohereV1Dialect",
    "CohereV2Dialect",
    "Dialect",
    "InfinityDialect",
    "JinaDialect",
    "ParsedAnswer",
    "RequestSettings",
    "RerankAnswer",
    "RerankHTTPClient",
    "TEIDialect",
    "VLLMDialect",
    "VoyageDialect",
    "check_answer",
    "describe_body",
    "estimate_tokens",
    "plan_requests",
    "retry_after_seconds",
]
