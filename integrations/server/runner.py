"""Running the app: `serve` (what the CLI calls: uvicorn, one process or `workers` processes)
and `BackgroundServer` (a real uvicorn server on a loopback port in a thread, for tests,
benchmarks and notebooks).

Graceful shutdown is uvicorn's: on SIGTERM or SIGINT it stops accepting connections, lets the
requests in flight finish (up to `graceful_timeout` seconds), then runs the app's shutdown,
which drains the batchers and closes the models.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

from rankbridge.rerankers.core.base import Reranker
from rankbridge.rerankers.core.errors import require

from rankbridge.integrations.server.metrics import MULTIPROC_ENV
from rankbridge.integrations.server.settings import ServeSettings

logger = logging.getLogger(__name__)

APP_FACTORY = "rankbridge.integrations.server.app:app_from_env"


def serve(
    settings: ServeSettings,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    rerankers: dict[str, Reranker] | None = None,
    graceful_timeout: float | None = 30.0,
    log_level: str = "info",
    access_log: bool = False,
) -> None:
    """Serve until SIGTERM / SIGINT. With `workers` > 1, uvicorn starts that many processes;
    each builds the app from the environment (`app_from_env`) and loads its own models, and
    `/metrics` sums them (prometheus_client multiprocess mode in a temporary folder)."""
    uvicorn = require("uvicorn", extra="serve")
    common: dict[str, Any] = dict(
        host=host, port=port, log_level=log_level, access_log=access_log,
        timeout_graceful_shutdown=graceful_timeout, lifespan="on",
    )
    with _exit_cleanly_on_sigterm():
        _run(uvicorn, settings, common, workers, rerankers)


def _run(uvicorn: Any, settings: ServeSettings, common: dict[str, Any], workers: int, rerankers) -> None:
    if workers <= 1:
        from rankbridge.integrations.server.app import create_app

        uvicorn.run(create_app(settings, rerankers), **common)
        return
    if rerankers:
        raise ValueError("prebuilt rerankers cannot be shared with worker processes; pass specs only")
    metrics_dir = None
    previous = {k: os.environ.get(k) for k in [*settings.to_env(), MULTIPROC_ENV]}
    try:
        os.environ.update(settings.to_env())
        if not os.environ.get(MULTIPROC_ENV):
            metrics_dir = tempfile.mkdtemp(prefix="rankbridge-metrics-")
            os.environ[MULTIPROC_ENV] = metrics_dir
        uvicorn.run(APP_FACTORY, factory=True, workers=workers, **common)
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)


@contextlib.contextmanager
def _exit_cleanly_on_sigterm() -> Iterator[None]:
    """uvicorn handles SIGTERM itself (graceful shutdown), then re-raises it to the handler that
    was there before; make that one a clean `SystemExit(0)` while serving, so the caller's
    `finally` blocks run and a graceful stop exits 0 instead of dying by the signal."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _exit(signum, frame):
        raise SystemExit(0)

    previous = signal.signal(signal.SIGTERM, _exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class BackgroundServer:
    """A real uvicorn server for the app on a free loopback port, in a daemon thread.

    Example:
        >>> import httpx
        >>> from rankbridge.integrations.server.settings import parse_reranker_option
        >>> with BackgroundServer(ServeSettings(models=[parse_reranker_option("lexical")])) as server:
        ...     httpx.get(server.url + "/health").json()
        {'status': 'ok'}
    """

    def __init__(
        self,
        settings: ServeSettings,
        rerankers: dict[str, Reranker] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        wait_ready: bool = True,
        timeout: float = 300.0,
    ):
        uvicorn = require("uvicorn", extra="serve")
        from rankbridge.integrations.server.app import create_app

        self.app = create_app(settings, rerankers)
        self.host = host
        self.port = port or free_port(host)
        self.timeout = timeout
        self.wait_ready = wait_ready
        config = uvicorn.Config(
            self.app, host=host, port=self.port, log_level="warning", access_log=False, lifespan="on",
            timeout_graceful_shutdown=30,
        )
        self.server = uvicorn.Server(config)
        self.server.install_signal_handlers = lambda: None  # not the main thread  # type: ignore[method-assign]
        self._thread = threading.Thread(target=self.server.run, name="rankbridge-serve", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def state(self):
        return self.app.state.rankbridge

    def start(self) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + self.timeout
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"the server on {self.url} exited during start-up")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the server on {self.url} did not start within {self.timeout} s")
            time.sleep(0.01)
        if self.wait_ready:
            while not self.state.ready:
                failed = [s.error for s in self.state.models.values() if s.error]
                if failed:
                    self.stop()
                    raise RuntimeError(f"a model failed to load: {failed[0]}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the models on {self.url} were not ready within {self.timeout} s")
                time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Graceful: in-flight requests finish, then the batchers drain and the models close."""
        self.server.should_exit = True
        self._thread.join(self.timeout)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
