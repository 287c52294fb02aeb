"""`load_reranker`: one entry point from a config (dict, YAML/JSON file, shorthand or env) to a backend."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from rankbridge.rerankers.core.base import Reranker
from rankbridge.rerankers.core.config import validate_config
from rankbridge.rerankers.core.errors import ConfigError
from rankbridge.rerankers.core.registry import available_backends, get_backend

ENV_VAR = "RANKBRIDGE_RERANKER"
_FILE_SUFFIXES = (".yaml", ".yml", ".json")


def load_reranker(spec: Reranker | dict[str, Any] | str | os.PathLike | None = None, **overrides: Any) -> Reranker:
    """Build a reranker from a declarative spec. Swapping backends is a config change.

    Args:
        spec: one of
            - a dict with a `backend` key and that backend's fields;
            - a path to a YAML or JSON file holding such a mapping (optionally under a
              top-level `reranker:` key);
            - a shorthand string `"<backend>"` or `"<backend>:<model>"`,
              e.g. `"cross-encoder:minilm-l6-ce-weak"`;
            - None: read the environment variable `RANKBRIDGE_RERANKER` (any of the above
              as a string, or inline JSON);
            - a `Reranker`, returned as is.
        overrides: fields that replace those in the spec.

    Raises:
        ConfigError: unknown backend (the message lists the known ones), invalid field
            (named, with the allowed values), unreadable file.
        MissingDependencyError: the backend's optional dependency is missing (names the extra).

    Example:
        >>> load_reranker({"backend": "lexical"}).config.backend
        'lexical'
        >>> load_reranker("identity").rank("q", ["a", "b"]).ids
        [0, 1]
    """
    if isinstance(spec, Reranker):
        if overrides:
            raise ConfigError("overrides cannot be applied to an already-built Reranker")
        return spec
    data = _spec_to_dict(spec)
    data.update(overrides)
    backend = data.get("backend")
    if not backend or not isinstance(backend, str):
        raise ConfigError(f"reranker config needs a 'backend' field; known backends: {', '.join(available_backends())}")
    backend_spec = get_backend(backend)
    config = validate_config(backend_spec.config_class, backend, data)
    return backend_spec.factory(config)


def read_spec(spec: dict[str, Any] | str | os.PathLike | None = None) -> dict[str, Any]:
    """The config mapping a spec stands for (file read, shorthand expanded, env consulted),
    without resolving or building the backend: what adapters store to rebuild a reranker lazily.

    Example:
        >>> read_spec("cross-encoder:minilm-l6-ce-weak")
        {'backend': 'cross-encoder', 'model': 'minilm-l6-ce-weak'}
    """
    return _spec_to_dict(spec)


def _spec_to_dict(spec: Any) -> dict[str, Any]:
    if spec is None:
        env = os.environ.get(ENV_VAR)
        if not env:
            raise ConfigError(f"no reranker spec given and {ENV_VAR} is not set")
        env = env.strip()
        if env.startswith("{"):
            try:
                return _as_mapping(json.loads(env), f"${ENV_VAR}")
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{ENV_VAR} holds invalid JSON: {exc}") from None
        return _spec_to_dict(env)
    if isinstance(spec, dict):
        return dict(spec)
    if isinstance(spec, os.PathLike):
        return _read_file(Path(spec))
    if isinstance(spec, str):
        text = spec.strip()
        if not text:
            raise ConfigError("empty reranker spec")
        path = Path(text).expanduser()
        if text.lower().endswith(_FILE_SUFFIXES) or path.is_file():
            return _read_file(path)
        backend, _, model = text.partition(":")
        data: dict[str, Any] = {"backend": backend.strip()}
        if model.strip():
            data["model"] = model.strip()
        return data
    raise ConfigError(f"a reranker spec must be a dict, a path or a string, not {type(spec).__name__}")


def _read_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"reranker config file not found: {path}")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
    else:
        import yaml

        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    return _as_mapping(loaded, str(path))


def _as_mapping(loaded: Any, where: str) -> dict[str, Any]:
    if isinstance(loaded, dict) and set(loaded) == {"reranker"}:
        loaded = loaded["reranker"]
    if not isinstance(loaded, dict):
        raise ConfigError(f"{where}: a reranker config must be a mapping with a 'backend' key")
    return dict(loaded)
