"""A FAKE OpenAI-compatible chat server on loopback, hand-written to inject faults that the real
vLLM server cannot produce on demand: 503s, 429s with Retry-After, hangs past the client's
timeout, dropped connections, truncated JSON, and chatty or unusable answers. It is the only fake
in the listwise tests; protocol, parsing and cost against a real model are tested with the real
vLLM server (tests/llm_rankers/vllm_server/test_listwise_server.py).

Its well-behaved answer ranks the passages of a listwise prompt by the number written in each
passage text (largest first), so the tests can check the bookkeeping exactly.

Usage:
    with FaultServer() as server:
        server.script("503", "503", "ok")        # the next three requests; then "ok" forever
        ... base_url=server.base_url ...
        server.requests                          # every request received (headers, JSON body)
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAULTS = ("ok", "503", "429", "500", "400", "hang", "drop", "truncated", "chatty", "think", "garbage", "no_logprobs")
_PASSAGE = re.compile(r"^\[([0-9A-Za-z]+)\] (.*)$", re.MULTILINE)


@dataclass
class Received:
    headers: dict[str, str]
    body: dict[str, Any]
    fault: str


@dataclass
class FaultServer:
    """The fake server; `hang_s` is how long a `hang` fault sleeps before answering."""

    hang_s: float = 3.0
    default: str = "ok"
    requests: list[Received] = field(default_factory=list)
    in_flight: int = 0
    peak_in_flight: int = 0

    def __post_init__(self) -> None:
        self._faults: deque[str] = deque()
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fault-server", daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def script(self, *faults: str) -> None:
        """Faults for the next requests, in order; afterwards `default` applies."""
        unknown = [f for f in faults if f not in FAULTS]
        if unknown:
            raise ValueError(f"unknown faults {unknown}; known: {FAULTS}")
        with self._lock:
            self._faults.extend(faults)

    def next_fault(self) -> str:
        with self._lock:
            return self._faults.popleft() if self._faults else self.default

    def __enter__(self) -> FaultServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def ranked_by_number(user_text: str) -> list[str]:
    """The labels of the prompt's passages, ordered by the first number in each passage text
    (largest first; passages without a number last, in prompt order)."""
    passages = _PASSAGE.findall(user_text)

    def key(item: tuple[int, tuple[str, str]]) -> tuple[float, int]:
        position, (_, text) = item
        match = re.search(r"\d+", text)
        return (-float(match.group(0)) if match else float("inf"), position)

    return [label for _, (label, _) in sorted(enumerate(passages), key=key)]


def _answer(body: dict[str, Any], fault: str) -> dict[str, Any]:
    messages = body.get("messages") or []
    user = next((m.get("content") or "" for m in messages if m.get("role") == "user"), "")
    labels = ranked_by_number(user)
    continuing = bool(messages) and messages[-1].get("role") == "assistant"
    numeric = bool(labels) and labels[0].isdigit()
    chain = " > ".join(f"[{label}]" for label in labels)
    if continuing:  # the prompt already opened "[": continue after it
        chain = chain[1:]
    if fault == "chatty":
        text = f"Sure! After reading all {len(labels)} passages carefully, here is my ranking:\n\n{chain}\n\nLet me know if you need more!"
    elif fault == "think":
        text = f"<think>Passage [1] mentions the query... maybe [2] > [1]?</think>\n{chain}"
    elif fault == "garbage":
        text = "I am sorry, but I cannot rank these passages."
    else:
        text = chain
    choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
    if body.get("logprobs") and fault != "no_logprobs":
        k = int(body.get("top_logprobs") or 1)
        tops = [{"token": label, "logprob": -0.1 - i} for i, label in enumerate(labels[:k])]
        if not numeric:
            tops.insert(1, {"token": "The", "logprob": -0.5})  # a non-label alternative, as real models give
        first = tops[0] if tops else {"token": text[:1], "logprob": 0.0}
        choice["logprobs"] = {"content": [{**first, "top_logprobs": tops[:k]}]}
        if body.get("max_tokens") == 1:
            choice["message"]["content"] = first["token"]
    prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
    completion_tokens = 1 if body.get("max_tokens") == 1 else len(text.split())
    return {
        "id": "fake",
        "object": "chat.completion",
        "model": body.get("model"),
        "choices": [choice],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


def _handler_for(server: FaultServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            if self.path.endswith("/models"):
                self._send(200, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]})
            else:
                self._send(200 if self.path == "/health" else 404, {})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = {}
            fault = server.next_fault()
            with server._lock:
                server.requests.append(Received(dict(self.headers), body, fault))
                server.in_flight += 1
                server.peak_in_flight = max(server.peak_in_flight, server.in_flight)
            try:
                self._respond(body, fault)
            finally:
                with server._lock:
                    server.in_flight -= 1

        def _respond(self, body: dict[str, Any], fault: str) -> None:
            if fault == "hang":
                time.sleep(server.hang_s)
            if fault in ("503", "500"):
                self._send(int(fault), {"error": {"message": "engine overloaded (injected)"}})
            elif fault == "429":
                self._send(429, {"error": {"message": "rate limited (injected)"}}, {"Retry-After": "0"})
            elif fault == "400":
                self._send(400, {"error": {"message": "This model's maximum context length is 2048 tokens (injected)"}})
            elif fault == "drop":
                self.close_connection = True
                self.connection.close()
            elif fault == "truncated":
                data = json.dumps(_answer(body, "ok")).encode()
                data = data[: len(data) // 2]
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            else:
                self._send(200, _answer(body, fault))

        def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

    return Handler
