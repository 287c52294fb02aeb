"""Bad input never crashes the server: each case is a 4xx in the dialect's error body, with a
message naming the problem, and the server answers the next request as before."""

from __future__ import annotations

import httpx
import pytest
from serve_support import DOCS, QUERY

V2, V1, TEI = "/v2/rerank", "/v1/rerank", "/rerank"


def good(route):
    if route == V2:
        return {"model": "lexical", "query": QUERY, "documents": DOCS}
    if route == V1:
        return {"query": QUERY, "documents": DOCS}
    return {"query": QUERY, "texts": DOCS}


def docs_key(route):
    return "texts" if route == TEI else "documents"


def message(route, body):
    if route == TEI:
        assert set(body) == {"error", "error_type"}
        return body["error"]
    assert body["id"] and body["message"]
    if route == V1:
        assert body["detail"] == body["message"]  # Jina's key too
    else:
        assert set(body) == {"id", "message"}
    return body["message"]


def post(server, route, *, json=None, content=None, headers=None):
    return httpx.post(server.url + route, json=json, content=content, headers=headers)


def with_(route, **changes):
    body = good(route)
    for key, value in changes.items():
        key = docs_key(route) if key == "docs" else key
        if value is _DROP:
            body.pop(key)
        else:
            body[key] = value
    return body


_DROP = object()
ROUTES = [V2, V1, TEI]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    "case, status, words",
    [
        ("malformed", 400, ["malformed JSON"]),
        ("empty body", 400, ["body is empty"]),
        ("missing query", 422, ["query", "required"]),
        ("query not a string", 422, ["query"]),
        ("missing documents", 422, ["required"]),
        ("empty documents", None, []),
        ("too many documents", 422, ["41", "40"]),
        ("document not a string", 422, ["2"]),
        ("body too large", 413, ["limit"]),
        ("json array", 422, []),
    ],
)
def test_bad_input_is_4xx_in_the_dialect_body(server, route, case, status, words):
    key = docs_key(route)
    if case == "malformed":
        r = post(server, route, content=b'{"query": "q", "documents": [', headers={"content-type": "application/json"})
    elif case == "empty body":
        r = post(server, route, content=b"")
    elif case == "missing query":
        r = post(server, route, json=with_(route, query=_DROP))
    elif case == "query not a string":
        r = post(server, route, json=with_(route, query=["a", "list"]))
    elif case == "missing documents":
        r = post(server, route, json=with_(route, docs=_DROP))
        words = [key] + words
    elif case == "empty documents":
        r = post(server, route, json=with_(route, docs=[]))
        # TEI: 400 `Empty`; Cohere's schema: at least one document
        status, words = (400, ["empty"]) if route == TEI else (422, ["documents", "at least 1"])
    elif case == "too many documents":
        r = post(server, route, json=with_(route, docs=["doc"] * 41))
    elif case == "document not a string":
        r = post(server, route, json=with_(route, docs=["a", "b", 17]))
    elif case == "body too large":
        r = post(server, route, json=with_(route, docs=["x" * 1000] * 39 + ["y" * 30_000]))
    else:
        r = post(server, route, json=[QUERY, DOCS])
    assert r.status_code == status, r.text
    text = message(route, r.json())
    for word in words:
        assert word.lower() in text.lower(), text
    if route == TEI and case == "empty documents":
        assert r.json()["error_type"] == "Empty"
    assert post(server, route, json=good(route)).status_code == 200  # still serving


@pytest.mark.parametrize("route", [V2, V1])
@pytest.mark.parametrize("top_n", ["NaN", "Infinity", "0", "-3", "2.5", '"three"'])
def test_bad_top_n(server, route, top_n):
    docs = ", ".join(f'"{d}"' for d in DOCS)
    model = '"model": "lexical", ' if route == V2 else ""
    raw = f'{{{model}"query": "{QUERY}", "documents": [{docs}], "top_n": {top_n}}}'.encode()
    r = post(server, route, content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert "top_n" in message(route, r.json())


def test_v2_rejects_unknown_fields_like_cohere(server):
    for field, value in [("return_documents", True), ("top_k", 3), ("rank_fields", ["text"])]:
        r = post(server, V2, json={**good(V2), field: value})
        assert r.status_code == 422
        assert message(V2, r.json()) == f"unknown field: parameter '{field}' is not a valid field"


def test_v2_needs_a_model_and_non_string_documents_are_named(server):
    r = post(server, V2, json={"query": QUERY, "documents": DOCS})
    assert r.status_code == 422 and "model" in message(V2, r.json())
    r = post(server, V2, json={**good(V2), "documents": ["a", {"text": "b"}]})
    assert r.status_code == 422 and "documents.1" in message(V2, r.json())


def test_v1_object_documents_must_have_text_or_image(server):
    r = post(server, V1, json={"query": QUERY, "documents": ["a", {"title": "no text"}]})
    assert r.status_code == 422 and "documents[1]" in message(V1, r.json())
    r = post(server, V1, json={"query": QUERY, "documents": [{"text": 3}]})
    assert r.status_code == 422 and "documents[0].text" in message(V1, r.json())
    r = post(server, V1, json={"query": QUERY, "documents": [{"image": "not base64 !!"}]})
    assert r.status_code == 422 and "documents[0].image" in message(V1, r.json())


def test_unknown_model_is_404_in_each_dialect(server):
    r = post(server, V2, json={**good(V2), "model": "nope"})
    assert r.status_code == 404 and "served models: 'lexical', 'identity'" in message(V2, r.json())
    r = post(server, V1, json={**good(V1), "model": "nope"})
    assert r.status_code == 404 and "'lexical'" in message(V1, r.json())


def test_declared_content_length_over_the_limit_is_refused_before_reading(server):
    import json
    import socket

    with socket.create_connection((server.host, server.port), timeout=30) as sock:
        sock.sendall(
            b"POST /rerank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 10000000\r\n\r\n{"
        )
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert "10000000" in message(TEI, json.loads(body))


def test_unknown_route_and_method_are_json(server):
    r = httpx.get(server.url + "/v2/rerank")
    assert r.status_code == 405 and "message" in r.json()
    r = httpx.post(server.url + "/v3/rerank", json={})
    assert r.status_code == 404 and "message" in r.json()
