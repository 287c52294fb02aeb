"""`vllm-page` against a loopback OpenAI-compatible chat server.

No vision-language model can be served on this CPU machine, so `PageJudgeTestDouble` below is a
hand-written TEST DOUBLE (a fake), not vLLM: it checks each request the way a VLM server would
need it (an `image_url` part holding a decodable base64 image, then the prompt text, one token,
logprobs asked) and answers first-token logprobs computed from the image's mean brightness, so
the expected scores are known exactly. It also injects faults a real server cannot produce on
demand (no logprobs, answers without the yes/no tokens, a server that is down).
"""

from __future__ import annotations

import base64
import io
import json
import math
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from rankbridge.llm_rankers.engines.chat import TokenLogprob
from rankbridge.llm_rankers.engines.openai_http import OpenAIChatClient
from rankbridge.llm_rankers.vllm_page import VLLMPageReranker, yes_no_score
from rankbridge.rerankers import BackendError, Candidate, CandidateError, ConfigError, load_reranker

Image = pytest.importorskip("PIL.Image")
pytest.importorskip("httpx")


def p_true(image) -> float:
    """The double's 'model': brighter pages are more relevant; P(True) in (0.05, 0.95)."""
    return 0.05 + 0.9 * float(np.asarray(image.convert("L"), dtype=float).mean()) / 255.0


class PageJudgeTestDouble:
    """A FAKE OpenAI-compatible `/v1/chat/completions` server on 127.0.0.1 (see module docstring).

    mode: "ok" (True/False with logprobs), "no_logprobs", "other_tokens" (neither answer word),
    "yes_only" (False is not among the alternatives), "http_500".
    """

    def __init__(self, mode: str = "ok"):
        self.mode = mode
        self.requests: list[dict] = []
        self.images: list = []
        self.errors: list[str] = []
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):  # /page/<level>.png: a gray page the double can fetch from itself
                level = int(self.path.rsplit("/", 1)[-1].split(".")[0])
                buffer = io.BytesIO()
                gray_page(level).save(buffer, format="PNG")
                data = buffer.getvalue()
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                double.requests.append(body)
                problem, image = double.check(body)
                if problem:
                    double.errors.append(problem)
                    return self.reply(400, {"error": {"message": problem}})
                if double.mode == "http_500":
                    return self.reply(500, {"error": {"message": "engine crashed"}})
                self.reply(200, double.answer(body, image))

            def reply(self, status, payload):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def check(self, body: dict) -> tuple[str | None, object]:
        """What a VLM server needs: an image part it can decode, then the prompt, 1 token, logprobs.

        Returns (the problem or None, this request's decoded image or None). The image is handed
        to `answer` directly: pages are sent concurrently, so `self.images[-1]` may be another
        request's image by the time this one is answered."""
        try:
            (message,) = body["messages"]
            image_part, text_part = message["content"]
        except (KeyError, ValueError, TypeError):
            return "expected one user message with [image_url, text] content parts", None
        if image_part.get("type") != "image_url" or text_part.get("type") != "text":
            return f"content parts must be image_url then text, got {image_part.get('type')}, {text_part.get('type')}", None
        url = image_part["image_url"]["url"]
        header, _, payload = url.partition(",")
        if url.startswith("http://127.0.0.1"):  # a URL the server fetches itself, as vLLM does
            import urllib.request

            with urllib.request.urlopen(url, timeout=5) as response:
                raw = response.read()
        elif header.startswith("data:image/") and header.endswith(";base64"):
            raw = base64.b64decode(payload)
        else:
            return f"image_url must be a base64 data URL or a loopback http URL, got {header[:40]!r}", None
        try:
            image = Image.open(io.BytesIO(raw))
            image.load()
        except Exception as exc:  # noqa: BLE001 - report any decode failure to the client
            return f"image does not decode: {exc}", None
        self.images.append(image)
        if body.get("max_tokens") != 1 or body.get("logprobs") is not True or not body.get("top_logprobs"):
            return "expected max_tokens=1, logprobs=true and top_logprobs", image
        return None, image

    def answer(self, body: dict, image) -> dict:
        p = p_true(image)
        alternatives = {
            "ok": [("True", math.log(p)), ("False", math.log(1 - p)), ("The", -9.0)],
            "yes_only": [("True", math.log(p)), ("The", -6.0), ("Yes", -7.5)],
            "other_tokens": [("The", -0.5), ("Yes", -1.2)],
            "no_logprobs": [],
        }[self.mode]
        alternatives.sort(key=lambda t: -t[1])
        first = alternatives[0][0] if alternatives else "True"
        choice = {"index": 0, "message": {"role": "assistant", "content": first}, "finish_reason": "length"}
        if alternatives:
            choice["logprobs"] = {
                "content": [
                    {
                        "token": first,
                        "logprob": alternatives[0][1],
                        "top_logprobs": [{"token": t, "logprob": lp} for t, lp in alternatives],
                    }
                ]
            }
        return {"id": "x", "object": "chat.completion", "model": body["model"], "choices": [choice], "usage": {"prompt_tokens": 300, "completion_tokens": 1}}


def gray_page(level: int, size=(60, 80)):
    return Image.new("RGB", size, (level, level, level))


def reranker_for(server, **fields):
    config = {"backend": "vllm-page", "base_url": server.base_url, "model": "tiny-vlm", **fields}
    client = OpenAIChatClient(server.base_url, "tiny-vlm", timeout=5.0, max_retries=fields.get("max_retries", 1), backoff=0.01)
    return VLLMPageReranker(config, client=client)


def test_pages_are_scored_by_yes_no_logprobs():
    levels = [40, 220, 120, 180]
    with PageJudgeTestDouble() as server:
        reranker = reranker_for(server)
        result = reranker.rank("is the sky blue?", [Candidate(image=gray_page(v), id=v) for v in levels])
    assert not server.errors
    assert result.ids == [220, 180, 120, 40]
    for r in result:
        p = p_true(gray_page(r.id))
        assert r.score == pytest.approx(math.log(p) - math.log(1 - p), abs=1e-6)
        assert r.relevance == pytest.approx(p, abs=1e-6)
    body = server.requests[0]
    assert body["model"] == "tiny-vlm" and body["temperature"] == 0.0
    assert "The query is: is the sky blue?" in body["messages"][0]["content"][1]["text"]
    assert reranker.stats.pages == 4 and reranker.stats.unscored == 0


def test_pages_are_resized_within_max_pixels_before_sending():
    with PageJudgeTestDouble() as server:
        reranker = reranker_for(server, max_pixels=100 * 100, image_format="jpeg")
        reranker.rank("q", [Candidate(image=gray_page(200, size=(800, 400))), Candidate(image=gray_page(10, size=(20, 30)))])
    assert not server.errors
    big, small = sorted(server.images, key=lambda im: -im.size[0])
    assert big.size[0] * big.size[1] <= 100 * 100 and big.size == (141, 70)
    assert small.size[0] * small.size[1] >= 28 * 28 * 4  # min_pixels default scales tiny pages up
    assert server.requests[0]["messages"][0]["content"][0]["image_url"]["url"].startswith("data:image/jpeg;base64,")


def test_http_image_urls_are_passed_to_the_server():
    with PageJudgeTestDouble() as server:
        origin = server.base_url.removesuffix("/v1")
        result = reranker_for(server).rank("q", [Candidate(image=f"{origin}/page/20.png"), Candidate(image=f"{origin}/page/240.png")])
    assert not server.errors
    assert server.requests[0]["messages"][0]["content"][0]["image_url"]["url"].startswith(origin)
    assert result.indices == [1, 0]
    p = p_true(gray_page(240))
    assert result[0].relevance == pytest.approx(p, abs=1e-6)


async def test_arank_and_rank_many_share_the_client():
    with PageJudgeTestDouble() as server:
        reranker = reranker_for(server)
        result = await reranker.arank("q", [Candidate(image=gray_page(30)), Candidate(image=gray_page(230))])
        many = reranker.rank_many(["a", "b"], [[Candidate(image=gray_page(90))], [Candidate(image=gray_page(10)), Candidate(image=gray_page(250))]])
        await reranker.aclose()
    assert result.indices == [1, 0]
    assert [r.indices for r in many] == [[0], [1, 0]]
    assert len(server.requests) == 5


def test_missing_no_token_is_bounded_by_the_lowest_alternative():
    with PageJudgeTestDouble(mode="yes_only") as server:
        reranker = reranker_for(server)
        result = reranker.rank("q", [Candidate(image=gray_page(200))])
    p = p_true(gray_page(200))
    assert result[0].score == pytest.approx(math.log(p) - (-7.5), abs=1e-6)
    assert reranker.stats.no_missing == 1 and reranker.stats.unscored == 0


def test_answers_without_yes_or_no_score_zero_and_are_counted(caplog):
    with PageJudgeTestDouble(mode="other_tokens") as server:
        reranker = reranker_for(server)
        result = reranker.rank("q", [Candidate(image=gray_page(10)), Candidate(image=gray_page(250))])
    assert result.scores == [0.0, 0.0] and result.relevances == [0.5, 0.5]
    assert result.indices == [0, 1]  # ties keep input order
    assert reranker.stats.unscored == 2
    assert "neither 'True' nor 'False'" in caplog.text


def test_server_without_logprobs_is_a_backend_error_or_falls_back():
    with PageJudgeTestDouble(mode="no_logprobs") as server:
        with pytest.raises(BackendError, match="no logprobs"):
            reranker_for(server).rank("q", [Candidate(image=gray_page(10))])
        fallback = reranker_for(server, on_error="fallback").rank(
            "q", [Candidate(image=gray_page(10), score=1.0), Candidate(image=gray_page(250), score=3.0)]
        )
    assert fallback.indices == [1, 0]
    assert "no logprobs" in fallback.fallback_reason


def test_server_errors_and_a_server_that_is_down():
    with PageJudgeTestDouble(mode="http_500") as server:
        with pytest.raises(BackendError, match="HTTP 500"):
            reranker_for(server, max_retries=1).rank("q", [Candidate(image=gray_page(10))])
        assert len(server.requests) == 2  # one retry
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    down = load_reranker({"backend": "vllm-page", "base_url": f"http://127.0.0.1:{port}/v1", "model": "m", "max_retries": 0, "timeout": 2})
    with pytest.raises(BackendError, match="connection error"):
        down.rank("q", [Candidate(image=gray_page(10))])
    down.close()


def test_bad_candidates_and_config_name_what_is_wrong():
    reranker = load_reranker({"backend": "vllm-page", "model": "m"})
    with pytest.raises(CandidateError, match="candidate 1 has no image"):
        reranker.rank("q", [Candidate(image=gray_page(1)), "text only"])
    with pytest.raises(CandidateError, match="candidate 0: cannot read its image"):
        reranker.rank("q", [Candidate(image=b"garbage")])
    with pytest.raises(ConfigError, match="prompt"):
        load_reranker({"backend": "vllm-page", "model": "m", "prompt": "no placeholder"})
    with pytest.raises(ConfigError, match="must differ"):
        load_reranker({"backend": "vllm-page", "model": "m", "yes_token": "Yes", "no_token": " Yes"})
    with pytest.raises(ConfigError, match="top_logprobs"):
        load_reranker({"backend": "vllm-page", "model": "m", "top_logprobs": 50})
    assert "secret" not in repr(load_reranker({"backend": "vllm-page", "model": "m", "api_key": "secret"}))


def test_yes_no_score_adds_spellings_of_the_same_answer():
    alternatives = [TokenLogprob("True", math.log(0.3)), TokenLogprob(" True", math.log(0.2)), TokenLogprob("False", math.log(0.5))]
    score, yes, no = yes_no_score(alternatives, "True", "False")
    assert (yes, no) == (True, True)
    assert score == pytest.approx(0.0, abs=1e-9)
