"""A reranker spec held by a framework adapter: checked when the adapter is built, the
model itself built on first use.

Both adapters (LlamaIndex, LangChain) keep the spec the user gave (a config path, a dict, a
shorthand string, or None for `$RANKBRIDGE_RERANKER`) as a plain, serializable field, and
never serialize the model.

Secrets: a spec that holds a secret field (an `api_key`: typed `SecretStr` by its backend, or
named like a key, token or password) is kept as a mapping whose secret values are `SecretStr`,
so `repr`, `model_dump_json` and `to_json` show ``**********``; a pickled adapter keeps the real
value (it is rebuilt with it).
"""

from __future__ import annotations

import copy
import os
import threading
from typing import Any

from rankbridge.rerankers.core.base import Reranker
from pydantic import SecretStr

from rankbridge.rerankers.core.config import RerankerConfig, secret_fields, validate_config
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
            # python mode keeps SecretStr values as SecretStr: masked when shown, real when rebuilt
            self._data = {**spec.config.model_dump(), "backend": spec.config.backend}
            self.spec: SerializedSpec = _masked_spec(self._data, self.config)
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
        secrets = _secret_keys(data, self.config)
        # what is rebuilt from: a typed secret as SecretStr (never a plain string in memory dumps)
        self._data = {k: (SecretStr(v) if k in secrets and isinstance(v, str) and _typed_secret(self.config, k) else v)
                      for k, v in data.items()}
        # what is shown and serialized: the spec as given, or, when it holds a secret, the mapping
        # with every secret masked
        self.spec = _masked_spec(data, self.config) if secrets else spec

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
        state["_reranker"] = None  # rebuilt from `_data` (secrets included) on first use
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LazyReranker({self.spec!r}, built={self.built})"


def shown_spec(spec: SerializedSpec) -> SerializedSpec:
    """The spec as adapters serialize it (`model_dump`, `model_dump_json`, `to_json`): every
    `SecretStr` value written as ``**********``.

    Example:
        >>> shown_spec({"backend": "listwise", "api_key": SecretStr("sk-1")})
        {'backend': 'listwise', 'api_key': '**********'}
    """
    if isinstance(spec, dict):
        return {k: (str(v) if isinstance(v, SecretStr) else v) for k, v in spec.items()}
    return spec


def _typed_secret(config: RerankerConfig, key: str) -> bool:
    return isinstance(getattr(config, key, None), SecretStr)


def _secret_keys(data: dict[str, Any], config: RerankerConfig) -> set[str]:
    names = secret_fields(type(config))
    return {k for k, v in data.items() if v is not None and (k in names or _typed_secret(config, k))}


def _masked_spec(data: dict[str, Any], config: RerankerConfig) -> dict[str, Any]:
    """`data` with every secret value as a `SecretStr` (shown as ``**********``)."""
    secrets = _secret_keys(data, config)
    out = {}
    for key, value in data.items():
        if key in secrets and not isinstance(value, SecretStr):
            value = SecretStr(value if isinstance(value, str) else str(value))
        out[key] = value
    return out
