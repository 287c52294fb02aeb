"""`rankbridge serve`: any configured reranker behind Cohere-, Jina- and TEI-compatible rerank routes.

Needs the `serve` extra (`pip install 'rankbridge[serve]'`: Starlette, uvicorn, prometheus-client).

Example:
    >>> from rankbridge.integrations.server import BackgroundServer, ServeSettings, parse_reranker_option
    >>> import httpx
    >>> with BackgroundServer(ServeSettings(models=[parse_reranker_option("lexical")])) as server:
    ...     r = httpx.post(server.url + "/rerank", json={"query": "capital of france",
    ...                    "texts": ["Bananas.", "Paris is the capital of France."]})
    >>> [item["index"] for item in r.json()]
    [1, 0]
"""

from __future__ import annotations

from typing import Any

from rankbridge.integrations.server.settings import ServedModel, ServeSettings, parse_reranker_option

__all__ = ["BackgroundServer", "ServeSettings", "ServedModel", "create_app", "parse_reranker_option", "serve"]


def __getattr__(name: str) -> Any:  # the ASGI stack is imported only when it is used
    if name == "create_app":
        from rankbridge.integrations.server.app import create_app

        return create_app
    if name in ("BackgroundServer", "serve"):
        from rankbridge.integrations.server import runner

        return getattr(runner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
