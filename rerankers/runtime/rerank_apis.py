"""Wire shapes of the rerank HTTP APIs rankbridge speaks: requests, result items, responses,
usage / meta, error bodies, limits and response builders. Pydantic only.

One module for both sides: the client (`rerankers/runtime/rerank_http.py`) builds requests and
parses answers with these models, `rankbridge serve` validates requests and builds its answers
with the same ones, and the strict test doubles validate what the client sends.

Request models are strict (`extra="forbid"`) where the real service rejects unknown fields
(Cohere answers 422 to e.g. `return_documents` in v2 or `top_k` anywhere), and lenient where the
real service accepts them (vLLM logs and ignores extra fields; TEI's serde structs ignore them).
For Voyage, Jina and Infinity the behaviour is unconfirmed: their request models forbid unknown
fields, so a test double catches a client that misnames a field. Response models always accept
extra fields (services add fields over time). Limits that are a server setting (TEI's 32 texts,
`--max-client-batch-size`) are constants here, not schema constraints.

Routes and their models (`ROUTES` holds the same table):

- Cohere v2: `POST /v2/rerank`; `CohereV2RerankRequest` -> `CohereV2RerankResponse`; errors `CohereErrorBody`.
- Cohere v1: `POST /v1/rerank`; `CohereV1RerankRequest` -> `CohereV1RerankResponse`; errors `CohereErrorBody`.
- Voyage: `POST {base}/rerank` (base ends in `/v1`); `VoyageRerankRequest` -> `VoyageRerankResponse`
  (`data[]`); errors `DetailErrorBody`.
- Jina: `POST {base}/rerank` (base ends in `/v1`); `JinaRerankRequest` -> `JinaRerankResponse`;
  errors `DetailErrorBody`.
- HF TEI: `POST /rerank`; `TEIRerankRequest` -> `TEIRerankResponse` (a bare array); errors `TEIErrorBody`.
- vLLM: `POST /rerank`, `/v1/rerank`, `/v2/rerank` (one handler); `VLLMRerankRequest` ->
  `VLLMRerankResponse`; errors `VLLMErrorBody` (older servers: `VLLMLegacyErrorBody`).
- Infinity: `POST /rerank` (optional prefix); `InfinityRerankRequest` -> `InfinityRerankResponse`;
  errors `InfinityErrorBody`.

Server-side builders: `cohere_v2_response`, `cohere_v1_response`, `jina_response`,
`tei_response`, and the error bodies `cohere_error`, `detail_error`, `tei_error`;
`unknown_field_message` words a rejected field the way Cohere does.

Example:
    >>> req = CohereV2RerankRequest.model_validate({"model": "rerank-v3.5", "query": "q", "documents": ["a", "b"]})
    >>> req.top_n is None
    True
    >>> from pydantic import ValidationError
    >>> try:
    ...     CohereV2RerankRequest.model_validate({"model": "m", "query": "q", "documents": ["a"], "return_documents": True})
    ... except ValidationError as exc:
    ...     print(unknown_field_message(exc))
    unknown field: parameter 'return_documents' is not a valid field
    >>> cohere_v2_response([(1, 0.9), (0, 0.1)], id="r-1", search_units=1)["results"][0]
    {'index': 1, 'relevance_score': 0.9}
    >>> tei_response([(0, 0.5)])
    [{'index': 0, 'score': 0.5}]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, RootModel, ValidationError

# ---------------------------------------------------------------------------------------- limits

COHERE_MAX_DOCUMENTS = 10_000  # hard limit per request
COHERE_RECOMMENDED_DOCUMENTS = 1_000  # what Cohere recommends per request
COHERE_DEFAULT_MAX_TOKENS_PER_DOC = 4_096
VOYAGE_MAX_DOCUMENTS = 1_000
VOYAGE_MAX_TOTAL_TOKENS = 600_000  # query tokens x documents + all document tokens (rerank-2.5, -2)
JINA_MAX_DOCUMENTS = 1_000  # unconfirmed; the value rankbridge splits at
TEI_MAX_CLIENT_BATCH_SIZE = 32  # TEI's default --max-client-batch-size (a server setting)
TEI_MAX_BODY_BYTES = 2 * 1024 * 1024  # bodies over 2 MB get a plain-text 413
VLLM_MAX_DOCUMENTS = 1_000  # vLLM documents no cap; rankbridge splits at this
INFINITY_MAX_DOCUMENTS = 1_000  # Infinity documents no cap (it batches itself); rankbridge splits at this


class _Strict(BaseModel):
    """A request the real service validates strictly: unknown fields are an error."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class _Lenient(BaseModel):
    """A request or response that tolerates fields it does not know (and keeps them)."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())


# ---------------------------------------------------------------------------------------- answer parts


class RelevanceResult(_Lenient):
    """One ranked document of an answer: its index in the request and its relevance score, as
    Cohere, Voyage, Jina, vLLM and Infinity all name them. Each API's result model adds its own
    echoed `document` (or none)."""

    index: int
    relevance_score: float


class _DocumentResult(RelevanceResult):
    """A result that echoes its document as an object when the request asked for it."""

    document: dict[str, Any] | None = None


class _TextResult(RelevanceResult):
    """A result that echoes its document as a string when the request asked for it."""

    document: str | None = None


class TokenUsage(_Lenient):
    """The token counts an answer reports (vLLM, Jina, Infinity); absent counts are None."""

    prompt_tokens: float | None = None
    total_tokens: float | None = None


# ---------------------------------------------------------------------------------------- Cohere


class CohereV2RerankRequest(_Strict):
    """`POST /v2/rerank`. v2 has no `return_documents` / `rank_fields`: the server answers 422."""

    model: str
    query: str
    documents: list[str] = Field(min_length=1)
    top_n: int | None = Field(None, ge=1)
    max_tokens_per_doc: int | None = Field(None, ge=1)


class CohereV1RerankRequest(_Strict):
    """`POST /v1/rerank`: documents may be objects (their `text`, or the `rank_fields`)."""

    model: str | None = None
    query: str
    documents: list[Union[str, dict[str, Any]]] = Field(min_length=1)
    top_n: int | None = Field(None, ge=1)
    rank_fields: list[str] | None = None
    return_documents: bool = False
    max_chunks_per_doc: int | None = Field(None, ge=1)


class CohereApiVersion(_Lenient):
    version: str | None = None
    is_deprecated: bool | None = None
    is_experimental: bool | None = None


class CohereTokens(_Lenient):
    input_tokens: float | None = None
    output_tokens: float | None = None


class CohereBilledUnits(CohereTokens):
    """What Cohere billed for the call: a rerank call bills `search_units`; the token counts
    of `CohereTokens`, `images` and `classifications` appear where Cohere bills those."""

    images: float | None = None
    search_units: float | None = None
    classifications: float | None = None


class CohereMeta(_Lenient):
    """Cohere's `meta`: the API version that answered, what was billed, token counts and
    warnings (a deprecated model, for one)."""

    api_version: CohereApiVersion | None = None
    billed_units: CohereBilledUnits | None = None
    tokens: CohereTokens | None = None
    warnings: list[str] | None = None


class CohereV2Result(RelevanceResult):
    """A v2 result never echoes its document."""


class CohereV1Document(_Lenient):
    text: str | None = None


class CohereV1Result(_DocumentResult):
    """A v1 result (`document` when asked `return_documents`)."""


class CohereV2RerankResponse(_Lenient):
    id: str | None = None
    results: list[CohereV2Result]
    meta: CohereMeta | None = None


class CohereV1RerankResponse(CohereV2RerankResponse):
    """v2's shape, with results that may echo their document (`return_documents`)."""

    results: list[CohereV1Result]


class CohereErrorBody(_Lenient):
    """Cohere's error body: `{"id": ..., "message": ...}` (`id` is absent on some errors)."""

    id: str | None = None
    message: str


# ---------------------------------------------------------------------------------------- Voyage


class VoyageRerankRequest(_Strict):
    """`POST {base}/rerank` with base `https://api.voyageai.com/v1`. The top-k field is `top_k`;
    `truncation` (default true) cuts over-long pairs instead of answering 400."""

    query: str
    documents: list[str] = Field(min_length=1)
    model: str
    top_k: int | None = Field(None, ge=1)
    return_documents: bool = False
    truncation: bool = True


class VoyageResult(_TextResult):
    """A Voyage result (`document` when asked `return_documents`)."""


class VoyageUsage(_Lenient):
    total_tokens: float | None = None


class VoyageRerankResponse(_Lenient):
    object: str | None = "list"
    data: list[VoyageResult]
    model: str | None = None
    usage: VoyageUsage | None = None


class DetailErrorBody(_Lenient):
    """Voyage's and Jina's error body: `{"detail": ...}` (a string, or FastAPI's list of problems)."""

    detail: Any


# ---------------------------------------------------------------------------------------- Jina


class JinaTextDocument(_Strict):
    text: str


class JinaImageDocument(_Strict):
    """An image document (jina-reranker-m0): an http(s) URL or base64 bytes."""

    image: str


JinaDocument = Union[str, JinaTextDocument, JinaImageDocument]


class JinaRerankRequest(_Strict):
    """`POST {base}/rerank` with base `https://api.jina.ai/v1`; `return_documents` defaults to true."""

    model: str
    query: str
    documents: list[JinaDocument] = Field(min_length=1)
    top_n: int | None = Field(None, ge=1)
    return_documents: bool = True


class JinaResult(_DocumentResult):
    """A Jina result (`document` unless asked `return_documents: false`)."""


class JinaUsage(TokenUsage):
    """Jina reports `total_tokens` (and sometimes `prompt_tokens`)."""


class JinaRerankResponse(_Lenient):
    model: str | None = None
    usage: JinaUsage | None = None
    results: list[JinaResult]


# ---------------------------------------------------------------------------------------- TEI


class TEIRerankRequest(_Lenient):
    """`POST /rerank` of text-embeddings-inference. More than `TEI_MAX_CLIENT_BATCH_SIZE` texts is
    a server limit (422 `Validation`), not a schema error; empty `texts` is 400 `Empty`."""

    query: str
    texts: list[str]
    raw_scores: bool = False
    return_text: bool = False
    truncate: bool | None = None
    truncation_direction: Literal["Left", "Right", "left", "right"] = "Right"


class TEIRank(_Lenient):
    index: int
    score: float
    text: str | None = None


class TEIRerankResponse(RootModel[list[TEIRank]]):
    """A bare JSON array of ranks, best first. Token usage comes in the `x-compute-tokens` header."""


class TEIErrorBody(_Lenient):
    """`{"error": ..., "error_type": ...}`; `error_type` is e.g. `Validation`, `Empty`,
    `Overloaded`, `Backend`, `Tokenizer` (match it case-insensitively)."""

    error: str
    error_type: str | None = None


TEI_USAGE_HEADER = "x-compute-tokens"

# ---------------------------------------------------------------------------------------- vLLM


class VLLMContentPart(_Lenient):
    """One part of a multimodal document: `{"type": "text", "text"}` or
    `{"type": "image_url", "image_url": {"url": ...}}`."""

    type: str


class VLLMMultiModalDocument(_Lenient):
    content: list[VLLMContentPart]


class VLLMRerankRequest(_Lenient):
    """`/rerank`, `/v1/rerank`, `/v2/rerank` (one handler). `top_n` 0 means all. Extra fields are
    accepted (and logged) by vLLM, so this model accepts them too. A pair over the model's context
    without `truncate_prompt_tokens` gets 400."""

    model: str | None = None
    query: str
    documents: list[Union[str, VLLMMultiModalDocument]]
    top_n: int = 0
    truncate_prompt_tokens: int | None = Field(None, ge=-1)
    max_tokens_per_doc: int | None = None
    max_tokens_per_query: int | None = None
    instruction: str | None = None


class VLLMResult(_DocumentResult):
    """A vLLM result (vLLM echoes `document`)."""


class VLLMUsage(TokenUsage):
    """vLLM reports `prompt_tokens` and `total_tokens`."""


class VLLMRerankResponse(_Lenient):
    id: str | None = None
    model: str | None = None
    usage: VLLMUsage | None = None
    results: list[VLLMResult]


class OpenAIErrorInfo(_Lenient):
    message: str
    type: str | None = None
    param: Any = None
    code: Any = None


class VLLMErrorBody(_Lenient):
    """vLLM's (and OpenAI's) error body: `{"error": {"message", "type", "param", "code"}}`."""

    error: OpenAIErrorInfo


class VLLMLegacyErrorBody(OpenAIErrorInfo):
    """Older vLLM: the error's fields at the top level, `{"object": "error", "message", "type", "param", "code"}`."""

    object: Literal["error"] = "error"


# ---------------------------------------------------------------------------------------- Infinity


class InfinityRerankRequest(_Strict):
    """`POST /rerank` of infinity-emb (an optional URL prefix in front)."""

    query: str
    documents: list[str] = Field(min_length=1)
    model: str | None = None
    top_n: int | None = Field(None, ge=1)
    return_documents: bool = False
    raw_scores: bool = False


class InfinityResult(_TextResult):
    """An Infinity result (`document` when asked `return_documents`)."""


class InfinityUsage(TokenUsage):
    """Infinity reports `prompt_tokens` and `total_tokens` (characters, by default)."""


class InfinityRerankResponse(_Lenient):
    object: str | None = "rerank"
    id: str | None = None
    created: int | None = None
    model: str | None = None
    usage: InfinityUsage | None = None
    results: list[InfinityResult]


class InfinityErrorBody(_Lenient):
    error: dict[str, Any]


# ---------------------------------------------------------------------------------------- routes

ROUTES: dict[str, dict[str, Any]] = {
    "cohere-v2": {"route": "/v2/rerank", "request": CohereV2RerankRequest, "response": CohereV2RerankResponse, "error": CohereErrorBody},
    "cohere-v1": {"route": "/v1/rerank", "request": CohereV1RerankRequest, "response": CohereV1RerankResponse, "error": CohereErrorBody},
    "voyage": {"route": "/rerank", "request": VoyageRerankRequest, "response": VoyageRerankResponse, "error": DetailErrorBody},
    "jina": {"route": "/rerank", "request": JinaRerankRequest, "response": JinaRerankResponse, "error": DetailErrorBody},
    "tei": {"route": "/rerank", "request": TEIRerankRequest, "response": TEIRerankResponse, "error": TEIErrorBody},
    "vllm": {"route": "/v1/rerank", "request": VLLMRerankRequest, "response": VLLMRerankResponse, "error": VLLMErrorBody},
    "infinity": {"route": "/rerank", "request": InfinityRerankRequest, "response": InfinityRerankResponse, "error": InfinityErrorBody},
}

# ---------------------------------------------------------------------------------------- builders

Ranked = Sequence[tuple[int, float]]  # (index into the request's documents, score), best first


def _sorted(ranked: Ranked, top_n: int | None) -> list[tuple[int, float]]:
    # Best first; ties keep request order (what the services do).
    items = sorted(((int(i), float(s)) for i, s in ranked), key=lambda item: (-item[1], item[0]))
    return items if top_n is None else items[:top_n]


def cohere_v2_response(
    ranked: Ranked,
    *,
    id: str,
    search_units: float | None = None,
    top_n: int | None = None,
    api_version: str = "2",
    warnings: list[str] | None = None,
) -> dict[str, Any]:
    """A Cohere v2 answer (what `cohere.ClientV2.rerank` parses), sorted by score."""
    results = [CohereV2Result(index=i, relevance_score=s) for i, s in _sorted(ranked, top_n)]
    meta = CohereMeta(
        api_version=CohereApiVersion(version=api_version),
        billed_units=CohereBilledUnits(search_units=search_units) if search_units is not None else None,
        warnings=warnings,
    )
    return CohereV2RerankResponse(id=id, results=results, meta=meta).model_dump(exclude_none=True)


def cohere_v1_response(
    ranked: Ranked,
    *,
    id: str,
    documents: Sequence[str | dict[str, Any]] | None = None,
    search_units: float | None = None,
    top_n: int | None = None,
) -> dict[str, Any]:
    """A Cohere v1 answer; pass `documents` (the request's) when it asked `return_documents`."""
    results = []
    for i, s in _sorted(ranked, top_n):
        doc = None
        if documents is not None:
            raw = documents[i]
            doc = {"text": raw} if isinstance(raw, str) else dict(raw)
        results.append(CohereV1Result(index=i, relevance_score=s, document=doc))
    meta = CohereMeta(
        api_version=CohereApiVersion(version="1"),
        billed_units=CohereBilledUnits(search_units=search_units) if search_units is not None else None,
    )
    return CohereV1RerankResponse(id=id, results=results, meta=meta).model_dump(exclude_none=True)


def jina_response(
    ranked: Ranked,
    *,
    model: str,
    documents: Sequence[Any] | None = None,
    total_tokens: float | None = None,
    top_n: int | None = None,
) -> dict[str, Any]:
    """A Jina answer; pass `documents` to return them (`{"text"}` for strings, the object as
    given otherwise), as `return_documents: true` (Jina's default) asks."""
    results = []
    for i, s in _sorted(ranked, top_n):
        doc = None
        if documents is not None:
            raw = documents[i]
            if isinstance(raw, BaseModel):
                raw = raw.model_dump()
            doc = {"text": raw} if isinstance(raw, str) else dict(raw)
        results.append(JinaResult(index=i, relevance_score=s, document=doc))
    usage = JinaUsage(total_tokens=total_tokens) if total_tokens is not None else None
    return JinaRerankResponse(model=model, usage=usage, results=results).model_dump(exclude_none=True)


def tei_response(ranked: Ranked, *, texts: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """TEI's bare array, best first; pass `texts` when the request asked `return_text`."""
    items = [TEIRank(index=i, score=s, text=texts[i] if texts is not None else None) for i, s in _sorted(ranked, None)]
    return TEIRerankResponse(items).model_dump(exclude_none=True)


def cohere_error(message: str, id: str | None = None) -> dict[str, Any]:
    return CohereErrorBody(id=id, message=message).model_dump(exclude_none=True)


def detail_error(detail: Any) -> dict[str, Any]:
    """Voyage's / Jina's error body."""
    return {"detail": detail}


def tei_error(message: str, error_type: str) -> dict[str, Any]:
    """TEI's error body, e.g. `tei_error("batch size 33 > maximum allowed batch size 32", "Validation")`."""
    return {"error": message, "error_type": error_type}


def vllm_error(message: str, type: str = "BadRequestError", code: int = 400, param: Any = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def unknown_field_message(error: ValidationError) -> str:
    """Cohere's wording for a request validation failure: the first unknown field if any
    (`unknown field: parameter 'top_k' is not a valid field`), else each problem by field."""
    problems = error.errors()
    for item in problems:
        if item.get("type") == "extra_forbidden":
            field = ".".join(str(part) for part in item.get("loc", ()))
            return f"unknown field: parameter '{field}' is not a valid field"
    parts = []
    for item in problems:
        field = ".".join(str(part) for part in item.get("loc", ())) or "body"
        parts.append(f"invalid request: {field}: {item.get('msg')}")
    return "; ".join(parts)


__all__ = [
    "COHERE_DEFAULT_MAX_TOKENS_PER_DOC",
    "COHERE_MAX_DOCUMENTS",
    "COHERE_RECOMMENDED_DOCUMENTS",
    "INFINITY_MAX_DOCUMENTS",
    "JINA_MAX_DOCUMENTS",
    "ROUTES",
    "TEI_MAX_BODY_BYTES",
    "TEI_MAX_CLIENT_BATCH_SIZE",
    "TEI_USAGE_HEADER",
    "VLLM_MAX_DOCUMENTS",
    "VOYAGE_MAX_DOCUMENTS",
    "VOYAGE_MAX_TOTAL_TOKENS",
    "CohereApiVersion",
    "CohereBilledUnits",
    "CohereErrorBody",
    "CohereMeta",
    "CohereTokens",
    "CohereV1Document",
    "CohereV1RerankRequest",
    "CohereV1RerankResponse",
    "CohereV1Result",
    "CohereV2RerankRequest",
    "CohereV2RerankResponse",
    "CohereV2Result",
    "DetailErrorBody",
    "InfinityErrorBody",
    "InfinityRerankRequest",
    "InfinityRerankResponse",
    "InfinityResult",
    "InfinityUsage",
    "JinaDocument",
    "JinaImageDocument",
    "JinaRerankRequest",
    "JinaRerankResponse",
    "JinaResult",
    "JinaTextDocument",
    "JinaUsage",
    "OpenAIErrorInfo",
    "RelevanceResult",
    "TEIErrorBody",
    "TEIRank",
    "TEIRerankRequest",
    "TEIRerankResponse",
    "TokenUsage",
    "VLLMContentPart",
    "VLLMErrorBody",
    "VLLMLegacyErrorBody",
    "VLLMMultiModalDocument",
    "VLLMRerankRequest",
    "VLLMRerankResponse",
    "VLLMResult",
    "VLLMUsage",
    "VoyageRerankRequest",
    "VoyageRerankResponse",
    "VoyageResult",
    "VoyageUsage",
    "cohere_error",
    "cohere_v1_response",
    "cohere_v2_response",
    "detail_error",
    "jina_response",
    "tei_error",
    "tei_response",
    "unknown_field_message",
    "vllm_error",
]
