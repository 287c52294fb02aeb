"""The three dialects `rankbridge serve` answers in: request parsing into one `RerankCall`,
answers and error bodies. Validation and answers use the shared wire models of
`rankbridge.rerankers.runtime.rerank_apis`, the same ones rankbridge's HTTP clients use.

- Cohere v2 (`POST /v2/rerank`): strict; unknown fields (`return_documents`, `top_k`) are 422
  with Cohere's `{"id", "message"}`.
- Cohere v1 / Jina (`POST /v1/rerank`): documents are strings, `{"text"}`, objects ranked by
  `rank_fields`, or `{"image": URL or base64}` (page backends only); `return_documents`. One
  route serves both, so its error body carries Cohere's `id` and `message` and Jina's `detail`.
- TEI (`POST /rerank`): `query, texts, raw_scores, return_text, truncate` -> a bare array;
  errors `{"error", "error_type"}`.
"""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from rankbridge.rerankers.core.types import Candidate, RankedResults
from rankbridge.rerankers.runtime import rerank_apis as api


class RequestProblem(Exception):
    """A request the server answers with an error: HTTP status, message, and TEI's error_type
    (`Validation`, `Empty`, `Unauthorized`, `NotFound`, `Unhealthy`, `Backend`)."""

    def __init__(self, status: int, message: str, kind: str = "Validation"):
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind


@dataclass
class RerankCall:
    """One rerank request in dialect-free terms."""

    model: str | None
    query: str
    candidates: list[Candidate]
    top_n: int | None = None
    documents: list[Any] | None = None  # what to echo back (return_documents / return_text); None: nothing
    raw_scores: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def search_units(documents: int) -> int:
    """Cohere bills one search unit per query per 100 documents."""
    return max(1, math.ceil(documents / 100))


def _finite(value: float) -> float:
    # JSON has no inf; a backend's raw score could be one.
    if math.isfinite(value):
        return value
    return math.copysign(1e308, value)


class Dialect:
    """One API's request model, answer and error body."""

    name = ""
    route = ""

    def parse(self, data: Any) -> RerankCall:
        raise NotImplementedError

    def answer(self, call: RerankCall, results: RankedResults, *, request_id: str, model: str) -> Any:
        raise NotImplementedError

    def error_body(self, problem: RequestProblem, request_id: str) -> Any:
        raise NotImplementedError

    def validation_message(self, error: ValidationError) -> str:
        return api.unknown_field_message(error)

    def _validate(self, model: type, data: Any):
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise RequestProblem(422, self.validation_message(exc)) from None


class CohereV2(Dialect):
    name = "cohere-v2"
    route = "/v2/rerank"

    def parse(self, data: Any) -> RerankCall:
        req = self._validate(api.CohereV2RerankRequest, data)
        extra = {"max_tokens_per_doc": req.max_tokens_per_doc} if req.max_tokens_per_doc else {}
        return RerankCall(req.model, req.query, [Candidate(text=d) for d in req.documents], req.top_n, extra=extra)

    def answer(self, call, results, *, request_id, model):
        ranked = [(r.index, r.relevance) for r in results]
        reason = results.fallback_reason
        warnings = [f"the reranker failed and the documents keep their input order: {reason}"] if reason else None
        return api.cohere_v2_response(
            ranked, id=request_id, search_units=search_units(len(call.candidates)), top_n=call.top_n, warnings=warnings
        )

    def error_body(self, problem, request_id):
        return api.cohere_error(problem.message, id=request_id)


class CohereV1Jina(Dialect):
    name = "cohere-v1"
    route = "/v1/rerank"

    def parse(self, data: Any) -> RerankCall:
        req = self._validate(api.CohereV1RerankRequest, data)
        candidates = [self._candidate(i, doc, req.rank_fields) for i, doc in enumerate(req.documents)]
        return RerankCall(
            req.model, req.query, candidates, req.top_n, documents=list(req.documents) if req.return_documents else None
        )

    @staticmethod
    def _candidate(i: int, doc: Any, rank_fields: list[str] | None) -> Candidate:
        if isinstance(doc, str):
            return Candidate(text=doc)
        if rank_fields:
            present = [f for f in rank_fields if f in doc]
            if not present:
                raise RequestProblem(422, f"documents[{i}] has none of the rank_fields {rank_fields}")
            parts = []
            for f in present:
                value = doc[f]
                if isinstance(value, (dict, list)) or value is None:
                    raise RequestProblem(422, f"documents[{i}].{f} must be a string or a number to be ranked")
                parts.append(f"{f}: {value}")
            return Candidate(text="\n".join(parts), metadata=dict(doc))
        text = doc.get("text")
        image = doc.get("image")
        if text is None and image is None:
            raise RequestProblem(422, f"documents[{i}] is an object without 'text' or 'image' (and no rank_fields)")
        if text is not None and not isinstance(text, str):
            raise RequestProblem(422, f"documents[{i}].text must be a string, got {type(text).__name__}")
        return Candidate(text=text, image=None if image is None else _image(i, image))

    def answer(self, call, results, *, request_id, model):
        ranked = [(r.index, r.relevance) for r in results]
        body = api.cohere_v1_response(
            ranked,
            id=request_id,
            documents=call.documents,
            search_units=search_units(len(call.candidates)),
            top_n=call.top_n,
        )
        body["model"] = model  # what Jina answers with
        return body

    def error_body(self, problem, request_id):
        body = api.cohere_error(problem.message, id=request_id)
        body.update(api.detail_error(problem.message))
        return body


class TEI(Dialect):
    name = "tei"
    route = "/rerank"

    def parse(self, data: Any) -> RerankCall:
        req = self._validate(api.TEIRerankRequest, data)
        if not req.texts:
            raise RequestProblem(400, "`texts` cannot be empty", kind="Empty")
        return RerankCall(
            None,
            req.query,
            [Candidate(text=t) for t in req.texts],
            None,
            documents=list(req.texts) if req.return_text else None,
            raw_scores=req.raw_scores,
        )

    def validation_message(self, error: ValidationError) -> str:
        parts = []
        for item in error.errors():
            where = ".".join(str(p) for p in item.get("loc", ())) or "body"
            parts.append(f"{where}: {item.get('msg')}")
        return "invalid request: " + "; ".join(parts)

    def answer(self, call, results, *, request_id, model):
        ranked = [(r.index, _finite(r.score) if call.raw_scores else r.relevance) for r in results]
        return api.tei_response(ranked, texts=call.documents)

    def error_body(self, problem, request_id):
        return api.tei_error(problem.message, problem.kind)


def _image(i: int, value: Any) -> Any:
    """An image document's value as a Candidate takes it: an http(s) URL or a data URL as is,
    plain base64 decoded to bytes. Never a path: a request must not read the server's files."""
    if not isinstance(value, str) or not value.strip():
        raise RequestProblem(422, f"documents[{i}].image must be an http(s) URL or a base64 string")
    text = value.strip()
    if text.startswith(("http://", "https://")):
        return text
    if text.startswith("data:"):
        header, sep, _ = text.partition(",")
        if not sep or ";base64" not in header:
            raise RequestProblem(422, f"documents[{i}].image: a data URL must be base64 (data:image/<type>;base64,...)")
        return text
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise RequestProblem(
            422, f"documents[{i}].image is neither an http(s) URL, a data URL nor valid base64"
        ) from None


DIALECTS: dict[str, Dialect] = {d.route: d for d in (CohereV2(), CohereV1Jina(), TEI())}
