"""`rankbridge serve`: any configured reranker as a Cohere-, Jina- and TEI-compatible rerank server.

    rankbridge serve --reranker cross-encoder:minilm-l6-ce-weak --port 8000
    rankbridge serve --reranker ce='{"backend": "cross-encoder", "model": "minilm-l6-ce-weak", "runtime": "onnx"}' \\
        --reranker bm25=lexical --api-key "$KEY" --workers 2

Every spec is validated before the server starts (a typo exits with the field named); with one
worker the models are loaded first too, so a missing model file is an error here, not a server
that never gets ready. The API key comes from `--api-key` or `RANKBRIDGE_API_KEY` (prefer the
variable: command lines are visible to other users) and is never logged.
"""

from __future__ import annotations

import argparse
import logging
import os

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve", help="serve rerankers over Cohere (v1, v2), Jina and TEI compatible HTTP routes"
    )
    p.add_argument(
        "--reranker", action="append", required=True, metavar="[NAME=]SPEC",
        help="a reranker to serve (repeatable): a load_reranker spec (shorthand, YAML/JSON file) or inline "
        "JSON; NAME (default: the backend name) is what a request's `model` selects; the first is the default",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--api-key", default=None, help="require Authorization: Bearer KEY (default: $RANKBRIDGE_API_KEY, else none)")
    p.add_argument("--max-documents", type=int, default=1000, help="most documents per request (default 1000)")
    p.add_argument("--max-body-bytes", type=int, default=16 * 1024 * 1024, help="largest request body (default 16 MiB)")
    p.add_argument("--max-batch-pairs", type=int, default=1024, help="most (query, document) pairs per batch (default 1024)")
    p.add_argument("--max-wait-ms", type=float, default=2.0, help="how long a batch waits for more requests (default 2)")
    p.add_argument("--no-batching", action="store_true", help="score each request on its own (no cross-request batching)")
    p.add_argument("--workers", type=int, default=1, help="server processes, each with its own models (default 1)")
    p.add_argument("--graceful-timeout", type=float, default=30.0, help="seconds in-flight requests get on SIGTERM (default 30)")
    p.add_argument("--access-log", action="store_true", help="log every request line (uvicorn's access log)")
    p.set_defaults(func=cmd_serve)


def build_settings(args: argparse.Namespace):
    """`ServeSettings` from the parsed arguments, every reranker spec validated (not loaded)."""
    from pydantic import ValidationError

    from rankbridge.rerankers.core.config import validate_config
    from rankbridge.rerankers.core.errors import ConfigError
    from rankbridge.rerankers.core.registry import get_backend

    from rankbridge.integrations.server.settings import API_KEY_ENV, ServeSettings, parse_reranker_option

    models = [parse_reranker_option(text) for text in args.reranker]
    for m in models:
        validate_config(get_backend(m.spec["backend"]).config_class, m.spec["backend"], m.spec)
    if args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {args.workers}")
    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    try:
        return ServeSettings(
            models=models,
            api_key=api_key,
            max_documents=args.max_documents,
            max_body_bytes=args.max_body_bytes,
            max_batch_pairs=args.max_batch_pairs,
            max_wait_ms=args.max_wait_ms,
            batching=not args.no_batching,
        )
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors(include_input=False)
        )
        raise ConfigError(f"invalid serve options: {problems}") from None


def cmd_serve(args: argparse.Namespace) -> int:
    from rankbridge.rerankers.core.errors import require

    require("starlette", extra="serve")
    require("uvicorn", extra="serve")
    from rankbridge.rerankers.core.loader import load_reranker

    from rankbridge.integrations.server.runner import serve

    settings = build_settings(args)
    rerankers = None
    if args.workers == 1:
        rerankers = {}
        for m in settings.models:
            logger.info("loading '%s' (%s)", m.name, m.spec.get("backend"))
            rerankers[m.name] = load_reranker(m.spec)
    logger.warning(
        "serving %s on http://%s:%d (%d worker%s%s)",
        ", ".join(f"'{m.name}'" for m in settings.models), args.host, args.port, args.workers,
        "s" if args.workers > 1 else "", ", API key required" if settings.api_key else "",
    )
    try:
        serve(
            settings,
            host=args.host,
            port=args.port,
            workers=args.workers,
            rerankers=rerankers,
            graceful_timeout=args.graceful_timeout,
            access_log=args.access_log,
            log_level="debug" if args.verbose > 1 else "info" if args.verbose or args.access_log else "warning",
        )
    finally:
        for reranker in (rerankers or {}).values():
            reranker.close()
    return 0
