"""FAKE backends for the server tests. Each one scores with the real `lexical` backend (BM25)
and injects only what a real backend cannot produce on demand:

- `serve-test-gate`: holds every batch until the test releases `GATE` (to observe what the
  server does while inference runs), and records the size of each batch it scored;
- `serve-test-explode`: fails (RuntimeError) for a query containing "EXPLODE", so one bad
  request can sit in a batch among good ones;
- `serve-test-slow`: writes `marker` when it starts scoring, then sleeps `delay_s` (a request in
  flight when the server gets SIGTERM).

Importing this module registers them.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Literal

from pydantic import Field

from rankbridge.rerankers import register_backend
from rankbridge.rerankers.backends.lexical import LexicalConfig, LexicalReranker

GATE = threading.Event()
GATE.set()
ENTERED = threading.Event()  # set when a batch starts scoring
BATCHES: list[int] = []  # queries per scored batch (serve-test-gate)


class GateConfig(LexicalConfig):
    backend: Literal["serve-test-gate"] = "serve-test-gate"


@register_backend("serve-test-gate", overwrite=True)
class GateReranker(LexicalReranker):
    """FAKE: lexical scores, but each batch waits for `GATE`."""

    name = "serve-test-gate"
    config_class = GateConfig

    def _score_batch(self, queries, candidate_lists):
        ENTERED.set()
        if not GATE.wait(60):
            raise RuntimeError("the test never opened the gate")
        BATCHES.append(len(queries))
        return super()._score_batch(queries, candidate_lists)


class ExplodeConfig(LexicalConfig):
    backend: Literal["serve-test-explode"] = "serve-test-explode"


@register_backend("serve-test-explode", overwrite=True)
class ExplodingReranker(LexicalReranker):
    """FAKE: lexical scores; a query containing "EXPLODE" fails like a crashed model."""

    name = "serve-test-explode"
    config_class = ExplodeConfig

    def _score_batch(self, queries, candidate_lists):
        if any("EXPLODE" in q for q in queries):
            raise RuntimeError("model crashed on this input")
        return super()._score_batch(queries, candidate_lists)


class SlowConfig(LexicalConfig):
    backend: Literal["serve-test-slow"] = "serve-test-slow"
    marker: str = Field(description="File written when a batch starts scoring.")
    delay_s: float = Field(2.0, description="Seconds each batch sleeps before scoring.")


@register_backend("serve-test-slow", overwrite=True)
class SlowReranker(LexicalReranker):
    """FAKE: lexical scores after writing `marker` and sleeping `delay_s`."""

    name = "serve-test-slow"
    config_class = SlowConfig

    def _score_batch(self, queries, candidate_lists):
        Path(self.config.marker).write_text("scoring")
        time.sleep(self.config.delay_s)
        return super()._score_batch(queries, candidate_lists)
