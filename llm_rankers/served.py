"""What every backend that talks to an OpenAI-compatible server (vLLM) shares: the connection
fields, a chat client built on first use, real async scoring, and a private event loop that
serves the synchronous `rank` without blocking a caller's loop."""

from __future__ import annotations

import asyncio
from abc import abstractmethod
import threading
from typing import Any

from pydantic import Field, SecretStr

from rankbridge.rerankers.core.base import Reranker, Scores
from rankbridge.rerankers.core.config import RerankerConfig
from rankbridge.rerankers.core.types import Candidate

from rankbridge.llm_rankers.engines.chat import BackgroundLoop, ChatClient
from rankbridge.llm_rankers.engines.openai_http import OpenAIChatClient


class ServedModelConfig(RerankerConfig):
    """Connection fields of a model behind an OpenAI-compatible server."""

    model: str = Field(description="The served model name, as the server's `/v1/models` lists it.")
    base_url: str = Field("http://127.0.0.1:8000/v1", description="OpenAI-compatible base URL of the server.")
    api_key: SecretStr | None = Field(None, description="Bearer token for the server, if it needs one (never shown in reprs).")
    timeout: float = Field(120.0, gt=0, description="Seconds for one request attempt.")
    max_retries: int = Field(3, ge=0, description="Retries on 429/5xx/connection errors/timeouts, with backoff.")
    max_concurrency: int = Field(8, ge=1, description="Requests in flight at once (across windows, pages and queries).")


class ServedModelReranker(Reranker):
    """Base class: subclasses implement `_ascore`; `rank` and `rank_many` run it on a private
    event loop, `arank` awaits it directly."""

    config_class = ServedModelConfig

    def __init__(self, config: Any = None, *, client: ChatClient | None = None, **kwargs: Any):
        super().__init__(config, **kwargs)
        self._client = client
        self._client_lock = threading.Lock()
        self._loop = BackgroundLoop()

    @property
    def client(self) -> ChatClient:
        """The chat client, built on first use."""
        with self._client_lock:
            if self._client is None:
                self._client = self._build_client()
            return self._client

    def _build_client(self) -> ChatClient:
        cfg = self.config
        return OpenAIChatClient(
            cfg.base_url,
            cfg.model,
            api_key=cfg.api_key.get_secret_value() if cfg.api_key else None,
            timeout=cfg.timeout,
            max_retries=cfg.max_retries,
            max_concurrency=cfg.max_concurrency,
        )

    def _score_batch(self, queries: list[str], candidate_lists: list[list[Candidate]]) -> list[Scores]:
        return self._loop.run(self._ascore_batch(queries, candidate_lists))

    async def _ascore_batch(self, queries: list[str], candidate_lists: list[list[Candidate]]) -> list[Scores]:
        """Every query at once (requests interleave under `max_concurrency`)."""
        return list(await asyncio.gather(*(self._ascore_query(q, c) for q, c in zip(queries, candidate_lists))))

    @abstractmethod
    async def _ascore_query(self, query: str, candidates: list[Candidate]) -> Scores:
        """Score one query's candidates over the server."""

    def close(self) -> None:
        if isinstance(self._client, OpenAIChatClient):
            try:
                self._loop.run(self._client.aclose())
            except RuntimeError:
                pass
        if self._client is not None:
            self._client.close()
        self._loop.stop()

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
        await asyncio.to_thread(self.close)
