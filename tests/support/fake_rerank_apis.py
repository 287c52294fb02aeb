"""FAKE rerank services: strict test doubles of the Cohere (v1, v2), Voyage, Jina, TEI, vLLM and
Infinity rerank APIs, served over real HTTP on loopback.

Every double is named FAKE and is strict about the real API's shape (see
`../shared/docs/rerank-http-apis.md`): it validates each request with the same pydantic request
models `rankbridge serve` uses (`rankbridge.rerankers.runtime.rerank_apis`), answers unknown
fields the way the service does (Cohere: 422 `unknown field: parameter 'x' is not a valid field`;
vLLM and TEI: accepted), enforces the service's limits (Cohere 10,000 documents, Voyage 1,000
documents and 600K tokens, TEI 32 texts -> 422 `Validation`, vLLM's 512-token context without a
truncation field -> 400), checks the bearer token, and answers in the service's own response
shape (sorted by score, `results[]` / `data[]` / a bare array, its usage fields, its error body).

What a real service cannot produce on demand is injected with `FakeRerankServer.fail_next(...)`:
a status with `Retry-After`, a hang, a truncated or HTML body, and answers with a result missing,
an index twice, an index out of range or a NaN score.

Scores come from `fake_logit` (query-word overlap, plus a small length term so ties are rare);
services that return probabilities return `sigmoid(fake_logit)`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import math
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from rankbridge.rerankers.runtime import rerank_apis as apis

# ---------------------------------------------------------------------------------------- scoring


def fake_logit(query: str, document: Any) -> float:
    """The FAKE services' model: 2 x (query words in the document) - 3, plus (length % 97) / 1000."""
    if not isinstance(document, str):
        document = json.dumps(document, sort_keys=True)[:200]
    words = set(query.lower().split())
    overlap = sum(w in words for w in document.lower().split())
    return 2.0 * overlap - 3.0 + (len(document) % 97) / 1000.0


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def fake_relevance(query: str, document: Any) -> float:
    return sigmoid(fake_logit(query, document))


def fake_tokens(text: str) -> int:
    """The FAKE services' token count: one token per 4 UTF-8 bytes (at least 1)."""
    return max(1, math.ceil(len(text.encode("utf-8")) / 4))


# ---------------------------------------------------------------------------------------- replies


@dataclass
class Reply:
    """One HTTP answer. `body` is JSON-encoded unless `raw` is given; `delay_s` waits first;
    `cut_body` sends a Content-Length larger than the bytes sent and closes the connection."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    content_type: str = "application/json"
    delay_s: float = 0.0
    cut_body: bool = False


@dataclass
class Recorded:
    """A request the FAKE server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any  # parsed JSON (or None)


Fault = Callable[["FakeAPI", Reply], Reply]


class FakeAPI:
    """One dialect of a FAKE rerank service: routes, validation, scoring and answer shape."""

    name = ""
    routes: tuple[str, ...] = ()
    request_model: type[BaseModel]
    results_key: str | None = "results"  # None: the body is the results array
    score_key = "relevance_score"

    def __init__(self, api_key: str | None = None):
        self.api_key = api_key

    # subclasses ------------------------------------------------------------------
    def error(self, status: int, message: str, kind: str = "") -> Reply:
        raise NotImplementedError

    def answer(self, request: Any, headers: dict[str, str]) -> Reply:
        raise NotImplementedError

    def validation_error(self, exc: ValidationError) -> Reply:
        return self.error(422, apis.unknown_field_message(exc), "Validation")

    # shared ----------------------------------------------------------------------
    def handle(self, method: str, path: str, headers: dict[str, str], body: Any) -> Reply:
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            return self.unauthorized()
        if method != "POST" or path not in self.routes:
            return self.error(404, f"no route {method} {path}", "NotFound")
        if not isinstance(body, dict):
            return self.error(400, "request body must be a JSON object", "Validation")
        try:
            request = self.request_model.model_validate(body)
        except ValidationError as exc:
            return self.validation_error(exc)
        return self.answer(request, headers)

    def unauthorized(self) -> Reply:
        return self.error(401, "invalid api token", "Unauthorized")

    def results(self, body: Any) -> list[dict[str, Any]]:
        return body if self.results_key is None else body[self.results_key]

    @staticmethod
    def ranked(query: str, documents: list[Any], probability: bool = True) -> list[tuple[int, float]]:
        scored = [(i, (fake_relevance if probability else fake_logit)(query, d)) for i, d in enumerate(documents)]
        return sorted(scored, key=lambda item: (-item[1], item[0]))


class FakeCohereV2(FakeAPI):
    """FAKE Cohere `POST /v2/rerank`: strict fields (422 on unknown ones), at most 10,000
    documents, 1 search unit per 100 documents."""

    name = "cohere"
    routes = ("/v2/rerank",)
    request_model = apis.CohereV2RerankRequest

    def error(self, status, message, kind=""):
        return Reply(status, apis.cohere_error(message, id=str(uuid.uuid4())))

    def validation_error(self, exc):
        message = apis.unknown_field_message(exc)
        return self.error(422 if message.startswith("unknown field") else 400, message)

    def answer(self, request, headers):
        if len(request.documents) > apis.COHERE_MAX_DOCUMENTS:
            return self.error(400, f"invalid request: cannot rerank more than {apis.COHERE_MAX_DOCUMENTS} documents")
        ranked = self.ranked(request.query, request.documents)
        units = math.ceil(len(request.documents) / 100)
        return Reply(body=apis.cohere_v2_response(ranked, id=str(uuid.uuid4()), search_units=units, top_n=request.top_n))


class FakeCohereV1(FakeCohereV2):
    """FAKE Cohere `POST /v1/rerank`."""

    routes = ("/v1/rerank",)
    request_model = apis.CohereV1RerankRequest

    def answer(self, request, headers):
        texts = [d if isinstance(d, str) else d.get("text", "") for d in request.documents]
        ranked = self.ranked(request.query, texts)
        return Reply(body=apis.cohere_v1_response(
            ranked, id=str(uuid.uuid4()), documents=request.documents if request.return_documents else None,
            search_units=math.ceil(len(texts) / 100), top_n=request.top_n,
        ))


class FakeVoyage(FakeAPI):
    """FAKE Voyage `POST /v1/rerank`: `top_k`, `data[]`, at most 1,000 documents and 600K tokens
    (query tokens x documents + document tokens), errors as `{"detail"}`."""

    name = "voyage"
    routes = ("/v1/rerank",)
    request_model = apis.VoyageRerankRequest
    results_key = "data"

    def error(self, status, message, kind=""):
        return Reply(status, apis.detail_error(message))

    def unauthorized(self):
        return self.error(401, "Provided API key is invalid.")

    def validation_error(self, exc):
        return Reply(422, {"detail": [{"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]})

    def answer(self, request, headers):
        n = len(request.documents)
        if n > apis.VOYAGE_MAX_DOCUMENTS:
            return self.error(400, f"The number of documents ({n}) exceeds the limit of {apis.VOYAGE_MAX_DOCUMENTS}.")
        total = fake_tokens(request.query) * n + sum(fake_tokens(d) for d in request.documents)
        if total > apis.VOYAGE_MAX_TOTAL_TOKENS:
            return self.error(400, f"Request exceeds the total token limit of {apis.VOYAGE_MAX_TOTAL_TOKENS} ({total}).")
        ranked = self.ranked(request.query, request.documents)
        if request.top_k is not None:
            ranked = ranked[: request.top_k]
        data = [{"index": i, "relevance_score": s} for i, s in ranked]
        return Reply(body={"object": "list", "data": data, "model": request.model, "usage": {"total_tokens": total}})


class FakeJina(FakeAPI):
    """FAKE Jina `POST /v1/rerank`: documents as strings, `{"text"}` or `{"image"}` (base64 or
    URL; jina-reranker-m0 only), `return_documents` true by default, errors as `{"detail"}`."""

    name = "jina"
    routes = ("/v1/rerank",)
    request_model = apis.JinaRerankRequest

    def error(self, status, message, kind=""):
        return Reply(status, apis.detail_error(message))

    def answer(self, request, headers):
        docs = []
        for i, doc in enumerate(request.documents):
            if isinstance(doc, apis.JinaImageDocument):
                if "m0" not in request.model:
                    return self.error(400, f"model {request.model} does not accept images (document {i})")
                if not doc.image.startswith(("http://", "https://")):
                    try:
                        base64.b64decode(doc.image, validate=True)
                    except (binascii.Error, ValueError):
                        return self.error(400, f"document {i}: image is neither a URL nor base64")
                docs.append({"image": doc.image})
            else:
                docs.append(doc.text if isinstance(doc, apis.JinaTextDocument) else doc)
        ranked = self.ranked(request.query, docs)
        tokens = sum(fake_tokens(d if isinstance(d, str) else "img") for d in docs)
        return Reply(body=apis.jina_response(
            ranked, model=request.model, documents=docs if request.return_documents else None,
            total_tokens=tokens, top_n=request.top_n,
        ))


class FakeTEI(FakeAPI):
    """FAKE text-embeddings-inference `POST /rerank`: `texts`, at most 32 (422 `Validation`), empty
    400 `Empty`, a pair over 512 tokens without `truncate` 413, a bare array back, usage in the
    `x-compute-tokens` header; unknown fields ignored (serde)."""

    name = "tei"
    routes = ("/rerank",)
    request_model = apis.TEIRerankRequest
    results_key = None
    score_key = "score"
    max_input_length = 512

    def error(self, status, message, kind=""):
        return Reply(status, apis.tei_error(message, kind or "Validation"))

    def answer(self, request, headers):
        n = len(request.texts)
        if n == 0:
            return self.error(400, "`texts` cannot be empty", "Empty")
        if n > apis.TEI_MAX_CLIENT_BATCH_SIZE:
            return self.error(422, f"batch size {n} > maximum allowed batch size {apis.TEI_MAX_CLIENT_BATCH_SIZE}", "Validation")
        lengths = [fake_tokens(request.query) + fake_tokens(t) for t in request.texts]
        if not request.truncate and max(lengths) > self.max_input_length:
            return self.error(
                413, f"Input validation error: `inputs` must have less than {self.max_input_length} tokens. "
                f"Given: {max(lengths)}", "Validation",
            )
        ranked = self.ranked(request.query, request.texts, probability=not request.raw_scores)
        body = apis.tei_response(ranked, texts=request.texts if request.return_text else None)
        return Reply(body=body, headers={apis.TEI_USAGE_HEADER: str(sum(lengths))})


class FakeVLLM(FakeAPI):
    """FAKE vLLM rerank (`/rerank`, `/v1/rerank`, `/v2/rerank`): extra fields accepted; a pair over
    the 512-token context without `truncate_prompt_tokens` is 400; `top_n` 0 = all; documents may
    be `{"content": [parts]}`; errors as `{"error": {"message", "type", "param", "code"}}`."""

    name = "vllm-rerank"
    routes = ("/rerank", "/v1/rerank", "/v2/rerank")
    request_model = apis.VLLMRerankRequest
    max_model_len = 512

    def error(self, status, message, kind=""):
        return Reply(status, apis.vllm_error(message, type=kind or "BadRequestError", code=status))

    def answer(self, request, headers):
        docs: list[Any] = []
        for doc in request.documents:
            if isinstance(doc, apis.VLLMMultiModalDocument):
                docs.append(doc.model_dump())
            else:
                docs.append(doc)
        lengths = [fake_tokens(request.query) + (fake_tokens(d) if isinstance(d, str) else 64) for d in docs]
        if request.truncate_prompt_tokens is None and max(lengths) > self.max_model_len:
            return self.error(
                400, f"This model's maximum context length is {self.max_model_len} tokens. However, you requested "
                f"{max(lengths)} tokens in the input for rerank.",
            )
        ranked = self.ranked(request.query, docs)
        if request.top_n:
            ranked = ranked[: request.top_n]
        results = [
            {"index": i, "document": {"text": docs[i]} if isinstance(docs[i], str) else {"multi_modal": docs[i]},
             "relevance_score": s}
            for i, s in ranked
        ]
        usage = {"prompt_tokens": sum(lengths), "total_tokens": sum(lengths)}
        return Reply(body={"id": f"rerank-{uuid.uuid4().hex}", "model": request.model or "minilm", "usage": usage, "results": results})


class FakeInfinity(FakeAPI):
    """FAKE infinity-emb `POST /rerank`: errors as `{"error": {...}}`."""

    name = "infinity"
    routes = ("/rerank",)
    request_model = apis.InfinityRerankRequest

    def error(self, status, message, kind=""):
        return Reply(status, {"error": {"message": message, "type": kind or "invalid_request_error", "code": status}})

    def answer(self, request, headers):
        ranked = self.ranked(request.query, request.documents)
        if request.top_n is not None:
            ranked = ranked[: request.top_n]
        chars = len(request.query) * len(request.documents) + sum(len(d) for d in request.documents)
        return Reply(body={
            "object": "rerank", "id": str(uuid.uuid4()), "created": 0, "model": request.model or "bge",
            "usage": {"prompt_tokens": chars, "total_tokens": chars},
            "results": [{"index": i, "relevance_score": s, "document": None} for i, s in ranked],
        })


FAKE_APIS: dict[str, type[FakeAPI]] = {
    "cohere": FakeCohereV2,
    "cohere-v1": FakeCohereV1,
    "voyage": FakeVoyage,
    "jina": FakeJina,
    "tei": FakeTEI,
    "vllm-rerank": FakeVLLM,
    "infinity": FakeInfinity,
}

# The base URL each backend is configured with against a FAKE server at `origin`.
BASE_PATHS = {"cohere": "", "cohere-v1": "", "voyage": "/v1", "jina": "/v1", "tei": "", "vllm-rerank": "", "infinity": ""}


# ---------------------------------------------------------------------------------------- faults


def status(code: int, message: str = "rate limited", *, retry_after: str | None = None, retry_after_ms: str | None = None) -> Fault:
    """Answer `code` with the API's error body (and `Retry-After` / `retry-after-ms`)."""

    def fault(api: FakeAPI, reply: Reply) -> Reply:
        out = api.error(code, message, "Overloaded" if code in (429, 503) else "Backend")
        if retry_after is not None:
            out.headers["Retry-After"] = retry_after
        if retry_after_ms is not None:
            out.headers["retry-after-ms"] = retry_after_ms
        return out

    return fault


def hang(seconds: float) -> Fault:
    def fault(api: FakeAPI, reply: Reply) -> Reply:
        reply.delay_s = seconds
        return reply

    return fault


def html_page(code: int = 502) -> Fault:
    def fault(api: FakeAPI, reply: Reply) -> Reply:
        page = (f"<html><head><title>{code} Bad Gateway</title></head><body><center><h1>{code} Bad Gateway"
                "</h1></center><hr><center>nginx</center></body></html>")
        return Reply(code, raw=page.encode(), content_type="text/html")

    return fault


def truncated_json() -> Fault:
    """A complete HTTP answer whose JSON body stops half-way."""

    def fault(api: FakeAPI, reply: Reply) -> Reply:
        text = json.dumps(reply.body)
        return Reply(200, raw=text[: len(text) // 2].encode(), headers=reply.headers)

    return fault


def cut_connection() -> Fault:
    """The body is cut by a closed connection (fewer bytes than Content-Length)."""

    def fault(api: FakeAPI, reply: Reply) -> Reply:
        reply.cut_body = True
        return reply

    return fault


def _mutate(change: Callable[[FakeAPI, list[dict[str, Any]]], None]) -> Fault:
    def fault(api: FakeAPI, reply: Reply) -> Reply:
        if reply.status == 200:
            change(api, api.results(reply.body))
        return reply

    return fault


def drop_result() -> Fault:
    return _mutate(lambda api, results: results.pop())


def duplicate_index() -> Fault:
    def change(api, results):
        results[-1]["index"] = results[0]["index"]

    return _mutate(change)


def index_out_of_range() -> Fault:
    def change(api, results):
        results[-1]["index"] = len(results) + 5

    return _mutate(change)


def nan_score() -> Fault:
    def change(api, results):
        results[0][api.score_key] = float("nan")

    return _mutate(change)


def unauthorized() -> Fault:
    return lambda api, reply: api.unauthorized()


# ---------------------------------------------------------------------------------------- server


class FakeRerankServer:
    """A FAKE rerank service on 127.0.0.1 (asyncio streams on their own thread, keep-alive).

    Attributes:
        requests: every request received, in arrival order.
        max_in_flight: the most requests it was answering at once.
    """

    def __init__(self, api: FakeAPI, delay_s: float = 0.0):
        self.api = api
        self.delay_s = delay_s
        self.requests: list[Recorded] = []
        self.faults: deque[Fault] = deque()
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self.loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"fake-{api.name}", daemon=True)

    # -- control
    def fail_next(self, *faults: Fault) -> FakeRerankServer:
        """Apply these faults to the next requests, one each, in order."""
        self.faults.extend(faults)
        return self

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.origin + BASE_PATHS.get(self.api.name, "")

    @property
    def bodies(self) -> list[Any]:
        return [r.body for r in self.requests]

    # -- lifecycle
    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]
        self._started.set()
        self.loop.run_forever()

    def start(self) -> FakeRerankServer:
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("FAKE rerank server did not start")
        return self

    def stop(self) -> None:
        async def shutdown() -> None:
            self.server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    # -- HTTP
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    name, sep, value = line.partition(":")
                    if sep:
                        headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0"))
                raw = await reader.readexactly(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                with self._lock:
                    self.requests.append(Recorded(method, path.split("?")[0], headers, body))
                    self.in_flight += 1
                    self.max_in_flight = max(self.max_in_flight, self.in_flight)
                    fault = self.faults.popleft() if self.faults else None
                try:
                    reply = self.api.handle(method, path.split("?")[0], headers, body)
                    if fault is not None:
                        reply = fault(self.api, reply)
                    delay = self.delay_s + reply.delay_s
                    if delay:
                        await asyncio.sleep(delay)
                    if not await self._write(writer, reply):
                        return
                finally:
                    with self._lock:
                        self.in_flight -= 1
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    @staticmethod
    async def _write(writer: asyncio.StreamWriter, reply: Reply) -> bool:
        payload = reply.raw if reply.raw is not None else json.dumps(reply.body).encode()
        declared = len(payload) + (100 if reply.cut_body else 0)
        if reply.cut_body:
            payload = payload[: len(payload) // 2]
        head = [f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Status')}",
                f"Content-Type: {reply.content_type}", f"Content-Length: {declared}"]
        head += [f"{k}: {v}" for k, v in reply.headers.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload)
        await writer.drain()
        return not reply.cut_body  # a cut body ends the connection


_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 408: "Request Timeout",
            409: "Conflict", 413: "Payload Too Large", 422: "Unprocessable Entity", 424: "Failed Dependency",
            429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}


@contextlib.contextmanager
def fake_rerank_api(name: str, *, api_key: str | None = None, delay_s: float = 0.0) -> Iterator[FakeRerankServer]:
    """Run the FAKE `name` service (a key of `FAKE_APIS`) for the duration of the block."""
    server = FakeRerankServer(FAKE_APIS[name](api_key=api_key), delay_s=delay_s).start()
    try:
        yield server
    finally:
        server.stop()


__all__ = [
    "FAKE_APIS",
    "FakeAPI",
    "FakeRerankServer",
    "Recorded",
    "Reply",
    "cut_connection",
    "drop_result",
    "duplicate_index",
    "fake_logit",
    "fake_relevance",
    "fake_rerank_api",
    "fake_tokens",
    "hang",
    "html_page",
    "index_out_of_range",
    "nan_score",
    "status",
    "truncated_json",
    "unauthorized",
]
