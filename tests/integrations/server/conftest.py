"""Servers for the `rankbridge serve` tests: real uvicorn on loopback ports, in threads."""

from __future__ import annotations

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

import serve_fakes  # noqa: E402,F401  registers the FAKE backends
from serve_support import API_KEY, settings  # noqa: E402

from rankbridge.integrations.server import BackgroundServer  # noqa: E402


@pytest.fixture(scope="module")
def server():
    """lexical (the default) and identity, no API key, small limits to test them."""
    with BackgroundServer(settings("lexical", "identity", max_documents=40, max_body_bytes=64 * 1024)) as srv:
        yield srv


@pytest.fixture(scope="module")
def keyed_server():
    with BackgroundServer(settings("bm25=lexical", api_key=API_KEY)) as srv:
        yield srv
