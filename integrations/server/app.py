"""The ASGI app of `rankbridge serve` (Starlette): any configured reranker behind Cohere-,
Jina- and TEI-compatible rerank routes.

Routes: `POST /v2/rerank` (Cohere v2), `POST /v1/rerank` (Cohere v1 / Jina), `POST /rerank`
(TEI), `GET /health` (the process is up), `GET /ready` (every model is loaded), `GET /v1/models`,
`GET /metrics` (Prometheus). With an API key, the rerank routes and `/v1/models` need
`Authorization: Bearer KEY`; the probes and `/metrics` stay open for load balancers.

Bad input never reaches a model: the body is read up to a byte limit, parsed, validated against
the dialect's request model, the documents are counted and each is checked against the
backend, and every problem is a 4xx in the dialect's error body naming it. Models are loaded in
a worker thread after start-up (so `/health` answers at once and `/ready` says when they are
in), scoring runs in each model's batcher thread, and the event loop never runs inference.

`create_app(settings)` builds the app; `app_from_env()` is the factory uvicorn worker
processes call (`--workers N`), reading the settings from the environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from rankbridge.rerankers.core.base import Reranker
from rankbridge.rerankers.core.errors import CandidateError, RankbridgeError, require
from rankbridge.rerankers.core.types import RankedResults

from rankbridge.integrations.server.batcher import DynamicBatcher
from rankbridge.integrations.server.dialects import DIALECTS, Dialect, RequestProblem, RerankCall
from rankbridge.integrations.server.metrics import CONTENT_TYPE, ServerMetrics
from rankbridge.integrations.server.settings import ServeSettings

logger = logging.getLogger(__name__)

FALLBACK_HEADER = "x-rankbridge-fallback"


@dataclass
class ModelSlot:
    """One served model: its reranker once loaded, its batcher, or why it failed to load."""

    name: str
    spec: dict[str, Any]
    reranker: Reranker | None = None
    batcher: DynamicBatcher | None = None
    error: str | None = None
    owned: bool = True  # built by the server (closed on shutdown), or handed in by the caller


@dataclass
class ServerState:
    settings: ServeSettings
    metrics: ServerMetrics
    models: dict[str, ModelSlot] = field(default_factory=dict)
    loading: asyncio.Task | None = None

    @property
    def ready(self) -> bool:
        return all(s.batcher is not None for s in self.models.values())


def create_app(settings: ServeSettings, rerankers: dict[str, Reranker] | None = None):
    """The Starlette app serving `settings.models`.

    Args:
        settings: what to serve and how (`ServeSettings`).
        rerankers: already-built rerankers by served name (the caller keeps ownership); the
            other models are loaded from their specs in a worker thread after start-up.

    Example:
        >>> from starlette.testclient import TestClient
        >>> from rankbridge.rerankers import load_reranker
        >>> from rankbridge.integrations.server.settings import parse_reranker_option
        >>> settings = ServeSettings(models=[parse_reranker_option("lexical")])
        >>> app = create_app(settings, rerankers={"lexical": load_reranker("lexical")})
        >>> with TestClient(app) as client:
        ...     body = client.post("/v2/rerank", json={"model": "lexical", "query": "capital of france",
        ...                        "documents": ["Bananas.", "Paris is the capital of France."]}).json()
        >>> [r["index"] for r in body["results"]]
        [1, 0]
    """
    require("starlette", extra="serve")
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    rerankers = dict(rerankers or {})
    unknown = set(rerankers) - {m.name for m in settings.models}
    if unknown:
        raise ValueError(f"rerankers {sorted(unknown)} are not among the served models")
    state = ServerState(settings=settings, metrics=ServerMetrics())
    for m in settings.models:
        slot = ModelSlot(m.name, m.spec)
        if m.name in rerankers:
            slot.reranker, slot.owned = rerankers[m.name], False
        state.models[m.name] = slot

    def start_batcher(slot: ModelSlot) -> None:
        assert slot.reranker is not None
        batcher = DynamicBatcher(
            slot.reranker,
            max_batch_pairs=settings.max_batch_pairs,
            max_wait_ms=settings.max_wait_ms,
            enabled=settings.batching,
            observe=lambda requests, pairs, name=slot.name: state.metrics.observe_batch(
                name, requests=requests, pairs=pairs
            ),
            name=slot.name,
        )
        slot.batcher = batcher

    async def load_models() -> None:
        from rankbridge.rerankers.core.loader import load_reranker

        for slot in state.models.values():
            if slot.batcher is not None:
                continue
            if slot.reranker is None:
                try:
                    slot.reranker = await asyncio.to_thread(load_reranker, slot.spec)
                except Exception as exc:  # reported by /ready and each request; the server stays up
                    slot.error = f"{type(exc).__name__}: {exc}"
                    logger.error("could not load model '%s': %s", slot.name, slot.error)
                    continue
            start_batcher(slot)
            assert slot.batcher is not None
            await slot.batcher.start()
            logger.info("model '%s' (%s) is ready", slot.name, slot.reranker.config.backend)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        for slot in state.models.values():
            if slot.reranker is not None:  # handed in: serve it at once
                start_batcher(slot)
                assert slot.batcher is not None
                await slot.batcher.start()
        state.loading = asyncio.create_task(load_models(), name="rankbridge-load-models")
        try:
            yield
        finally:
            # uvicorn has let the in-flight requests finish; drain the batchers, then free the models
            if not state.loading.done():
                state.loading.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await state.loading
            for slot in state.models.values():
                if slot.batcher is not None:
                    await slot.batcher.close()
                    slot.batcher = None
                if slot.owned and slot.reranker is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.to_thread(slot.reranker.close)

    # ------------------------------------------------------------------ helpers

    def authorized(request: Request) -> bool:
        if settings.api_key is None:
            return True
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        expected = settings.api_key.get_secret_value()
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), expected.encode())

    async def read_json(request: Request) -> Any:
        limit = settings.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise RequestProblem(413, f"request body is {declared} bytes; the limit is {limit} bytes")
        chunks, size = [], 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise RequestProblem(413, f"request body is over the limit of {limit} bytes")
                chunks.append(chunk)
        except ClientDisconnect:
            raise ClientGone() from None
        body = b"".join(chunks)
        if not body.strip():
            raise RequestProblem(400, "the request body is empty; send a JSON object")
        try:
            return json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise RequestProblem(400, f"malformed JSON body: {exc}") from None

    def select(call: RerankCall) -> ModelSlot:
        name = call.model if call.model is not None else settings.default_model
        slot = state.models.get(name)
        if slot is None:
            served = ", ".join(f"'{n}'" for n in state.models)
            raise RequestProblem(404, f"model '{name}' is not served here; served models: {served}", kind="NotFound")
        if slot.batcher is None:
            why = f"failed to load: {slot.error}" if slot.error else "is still loading"
            raise RequestProblem(503, f"model '{name}' {why}", kind="Unhealthy")
        return slot

    def check(call: RerankCall, slot: ModelSlot) -> None:
        n = len(call.candidates)
        if n == 0:
            raise RequestProblem(400, "documents cannot be empty", kind="Empty")
        if n > settings.max_documents:
            raise RequestProblem(
                422, f"batch size {n} > maximum allowed batch size {settings.max_documents} (documents per request)"
            )
        assert slot.reranker is not None
        for i, cand in enumerate(call.candidates):
            try:
                slot.reranker.check_candidate(i, cand)
            except CandidateError as exc:
                raise RequestProblem(422, f"documents[{i}]: {exc}") from None

    async def rerank(dialect: Dialect, request: Request):
        started = time.perf_counter()
        request_id = str(uuid.uuid4())
        status, documents = 500, 0
        try:
            try:
                if not authorized(request):
                    raise RequestProblem(401, "invalid or missing API key (send Authorization: Bearer KEY)", kind="Unauthorized")
                try:
                    call = dialect.parse(await read_json(request))
                except ClientGone:
                    status = 499
                    return Response(status_code=499)
                documents = len(call.candidates)
                slot = select(call)
                check(call, slot)
                assert slot.batcher is not None
                try:
                    results: RankedResults = await until_disconnect(
                        request, slot.batcher.submit(call.query, call.candidates)
                    )
                except ClientGone:
                    status = 499  # nginx's "client closed request": nobody reads an answer
                    return Response(status_code=499)
                except (CandidateError, ValueError, TypeError) as exc:
                    raise RequestProblem(422, str(exc)) from None
                except RankbridgeError as exc:  # BackendError, a missing dependency
                    raise RequestProblem(500, f"the reranker failed: {exc}", kind="Backend") from None
                body = dialect.answer(call, results, request_id=request_id, model=slot.name)
                headers = {}
                if results.fallback_reason:
                    headers[FALLBACK_HEADER] = _header_safe(results.fallback_reason)
                status = 200
                return JSONResponse(body, headers=headers)
            except RequestProblem as problem:
                status = problem.status
                if status >= 500:
                    logger.error("%s %s: %s", dialect.route, status, problem.message)
                else:
                    logger.info("%s %s: %s", dialect.route, status, problem.message)
                return JSONResponse(dialect.error_body(problem, request_id), status_code=status)
            except Exception as exc:  # a bug must not take the server down or leak a traceback
                logger.exception("unexpected error on %s", dialect.route)
                status = 500
                problem = RequestProblem(500, f"internal server error: {type(exc).__name__}", kind="Backend")
                return JSONResponse(dialect.error_body(problem, request_id), status_code=500)
        finally:
            state.metrics.observe_request(
                dialect.route, status, documents=documents, seconds=time.perf_counter() - started
            )

    def route_for(dialect: Dialect):
        async def endpoint(request: Request):
            return await rerank(dialect, request)

        endpoint.__name__ = f"rerank_{dialect.name.replace('-', '_')}"
        return endpoint

    async def health(request: Request):
        return JSONResponse({"status": "ok"})

    async def ready(request: Request):
        models = {
            s.name: ("ready" if s.batcher is not None else "failed" if s.error else "loading")
            for s in state.models.values()
        }
        errors = {s.name: s.error for s in state.models.values() if s.error}
        body: dict[str, Any] = {"status": "ready" if state.ready else "not ready", "models": models}
        if errors:
            body["errors"] = errors
        return JSONResponse(body, status_code=200 if state.ready else 503)

    async def models(request: Request):
        if not authorized(request):
            return JSONResponse(
                {"message": "invalid or missing API key (send Authorization: Bearer KEY)"}, status_code=401
            )
        data, cohere = [], []
        for s in state.models.values():
            backend = s.reranker.config.backend if s.reranker is not None else s.spec.get("backend")
            item = {"id": s.name, "object": "model", "owned_by": "rankbridge", "backend": backend, "ready": s.batcher is not None}
            if s.reranker is not None:
                item["accepts_text"] = s.reranker.accepts_text
                item["accepts_images"] = s.reranker.accepts_images
            data.append(item)
            cohere.append({"name": s.name, "endpoints": ["rerank"]})
        return JSONResponse({"object": "list", "data": data, "models": cohere})

    async def metrics(request: Request):
        return Response(state.metrics.render(), media_type=CONTENT_TYPE)

    async def http_error(request: Request, exc: HTTPException):
        message = f"{request.method} {request.url.path}: {exc.detail}"
        return JSONResponse(
            {"message": message, "detail": message, "error": message, "error_type": "NotFound"},
            status_code=exc.status_code,
        )

    routes = [Route(d.route, route_for(d), methods=["POST"]) for d in DIALECTS.values()]
    routes += [
        Route("/health", health, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error})
    app.state.rankbridge = state
    return app


class ClientGone(Exception):
    """The client closed its connection before its results were ready."""


async def until_disconnect(request: Any, work: Any) -> Any:
    """Await `work`, unless the client disconnects first: then `work` is cancelled (a batch
    that has not started skips it) and `ClientGone` is raised. Called once the body is read,
    so the next ASGI message can only be the disconnect."""
    job = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(request.receive())
    try:
        done, _ = await asyncio.wait({job, gone}, return_when=asyncio.FIRST_COMPLETED)
        if job in done:
            return job.result()
        message = gone.result()
        if message.get("type") == "http.disconnect":
            job.cancel()
            raise ClientGone()
        return await job
    finally:
        gone.cancel()
        if not job.done():
            job.cancel()


def app_from_env():
    """The app factory a uvicorn worker process calls: settings from `RANKBRIDGE_SERVE_SETTINGS`
    and `RANKBRIDGE_API_KEY` (what `rankbridge serve --workers N` sets)."""
    return create_app(ServeSettings.from_env())


def _header_safe(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat.encode("ascii", "replace").decode("ascii")[:limit]
