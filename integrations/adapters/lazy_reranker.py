"""A reranker spec held by a framework adapter: checked when the adapter is built, the
model itself built on first use.

Both adapters (LlamaIndex, LangChain) keep the spec the user gave (a config path, a dict, a
shorthand string, or None for `$RANKBRIDGE_RERANKER`) as a plain, serializable field, and
never serialize the model.
"""

from __future__ import annotations

import copy
import os
import threading
from typing import Any

from rankbridge.rerankers.core.base import Reranker
from rankbridge.rerankers.core.config import RerankerConfig, validate_config
from rankbridge.rerankers.core.errors import ConfigError
from rankbridge.rerankers.core.loader import load_reranker, read_spec
from rankbridge.rerankers.core.registry import available_backends, get_backend

SerializedSpec = str | dict[str, Any] | None


class LazyReranker:
    """Validate a reranker spec now (a bad field raises `ConfigError` here, without loading
    any weights), build the reranker on the first call to `get()`.

    Args:
        spec: a `Reranker` (used as is), or anything `load_reranker` accepts: a dict, a
            YAML/JSON path (str or `os.PathLike`), a shorthand like ``"lexical"`` or
            ``"cross-encoder:minilm-l6-ce-weak"``, or None (read `$RANKBRIDGE_RERANKER`).

    Example:
        >>> lazy = LazyReranker({"backend": "lexical", "k1": 1.2})
        >>> lazy.built, lazy.model_name
        (False, 'lexical')
        >>> lazy.get().config.k1, lazy.built
        (1.2, True)
    """

    def __init__(self, spec: Reranker | SerializedSpec | os.PathLike = None):
        self._lock = threading.Lock()
        self._reranker: Reranker | None = None
        if isinstance(spec, Reranker):
            self._reranker = spec
            self.config: RerankerConfig = spec.config
            self.spec: SerializedSpec = {**spec.config.model_dump(mode="json"), "backend": spec.config.backend}
            return
        if isinstance(spec, os.PathLike):
            spec = os.fspath(spec)
        if spec is not None and not isinstance(spec, (str, dict)):
            raise ConfigError(
                f"reranker= must be a Reranker, a config dict, a config file path or a shorthand string, "
                f"not {type(spec).__name__}"
            )
        # Read the spec once: the adapter keeps behaving as configured even if the file changes.
        data = read_spec(spec)
        backend = data.get("backend")
        if not backend or not isinstance(backend, str):
            raise ConfigError(
                f"reranker config needs a 'backend' field; known backends: {', '.join(available_backends())}"
            )
        self.config = validate_config(get_backend(backend).config_class, backend, data)
        self.spec = spec
        self._data = data

    @property
    def built(self) -> bool:
        return self._reranker is not None

    @property
    def backend(self) -> str:
        return self.config.backend

    @property
    def model_name(self) -> str:
        """``backend`` or ``backend:model`` — what events and logs call this reranker."""
        model = getattr(self.config, "model", None)
        return f"{self.backend}:{model}" if model else self.backend

    def get(self) -> Reranker:
        """The reranker, built on the first call (thread-safe; built once)."""
        if self._reranker is None:
            with self._lock:
                if self._reranker is None:
                    self._reranker = load_reranker(dict(self._data))
        return self._reranker

    def close(self) -> None:
        if self._reranker is not None:
            self._reranker.close()

    # A copied or pickled adapter shares (copy) or rebuilds (pickle) the model; the lock is never copied.
    def __deepcopy__(self, memo: dict[int, Any]) -> LazyReranker:
        clone = copy.copy(self)
        clone._lock = threading.Lock()
        return clone

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_lock", None)
        if not hasattr(self, "_data"):
            state["_data"] = dict(self.spec)  # built from a Reranker: rebuild from its config
        state["_reranker"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LazyReranker({self.spec!r}, built={self.built})"
