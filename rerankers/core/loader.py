"""`load_reranker`: one entry point from a config (dict, YAML/JSON file, shorthand or env) to a backend."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from rankbridge.rerankers.core.base import Reranker
from rankbridge.rerankers.core.config import RerankerConfig, validate_config
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
            - an inline JSON or YAML mapping as a string, e.g. `'{"backend": "lexical"}'`;
            - a shorthand string `"<backend>"` or `"<backend>:<model>"`,
              e.g. `"cross-encoder:minilm-l6-ce-weak"`;
            - None: read the environment variable `RANKBRIDGE_RERANKER` (any of the string
              forms above).
            Every string form follows one rule, `parse_spec_string`: inline mapping, then
            file, then shorthand. A config may expand to at most `MAX_SPEC_NODES` values.
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
    backend_spec, config = _validated(spec, overrides)
    return backend_spec.factory(config)


def validate_spec(spec: dict[str, Any] | str | os.PathLike | None = None, **overrides: Any) -> RerankerConfig:
    """The validated config a spec stands for, without building the backend (no weights load):
    a bad spec raises the same `ConfigError` `load_reranker` would.

    Example:
        >>> validate_spec("lexical").backend
        'lexical'
    """
    return _validated(spec, overrides)[1]


def _validated(spec: Any, overrides: dict[str, Any]) -> tuple[Any, RerankerConfig]:
    data, how = _spec_to_dict(spec)
    data.update(overrides)
    backend = data.get("backend")
    if not backend or not isinstance(backend, str):
        raise ConfigError(f"reranker config needs a 'backend' field; known backends: {', '.join(available_backends())}")
    backend_spec = backend_of(data, how, spec)
    return backend_spec, validate_config(backend_spec.config_class, backend, data)


def backend_of(data: dict[str, Any], how: str = "dict", spec: Any = None):
    """The registry entry for `data['backend']`; when the spec was read as the shorthand, an
    unknown backend's error says so (the text was not a mapping, nor an existing file)."""
    try:
        return get_backend(data["backend"])
    except ConfigError as exc:
        if how != "shorthand":
            raise
        origin = "reranker spec" if isinstance(spec, str) else f"${ENV_VAR}"
        shown = _shown(spec if isinstance(spec, str) else str(os.environ.get(ENV_VAR, "")))
        raise ConfigError(
            f"{origin} {shown} was read as the '<backend>:<model>' shorthand (it is not an inline "
            f"mapping and no such file exists): {exc}"
        ) from None


def read_spec(spec: dict[str, Any] | str | os.PathLike | None = None) -> dict[str, Any]:
    """The config mapping a spec stands for (file read, inline mapping parsed, shorthand
    expanded, env consulted), without resolving or building the backend: what adapters store to
    rebuild a reranker lazily.

    Example:
        >>> read_spec("cross-encoder:minilm-l6-ce-weak")
        {'backend': 'cross-encoder', 'model': 'minilm-l6-ce-weak'}
        >>> read_spec('{"backend": "lexical", "k1": 1.2}')
        {'backend': 'lexical', 'k1': 1.2}
    """
    return _spec_to_dict(spec)[0]


def parse_spec_string(text: str, origin: str = "reranker spec") -> dict[str, Any]:
    """The one rule for a spec given as a string (a CLI flag, an adapter argument,
    `$RANKBRIDGE_RERANKER`), tried in this order:

    1. an inline mapping: text starting with ``{`` (JSON, or a YAML flow mapping), or YAML
       ``key: value`` lines (``backend: lexical``, several lines);
    2. a config file: a path that exists, or any name ending in ``.yaml`` / ``.yml`` / ``.json``;
    3. the shorthand ``<backend>`` or ``<backend>:<model>`` (split at the first colon).

    A failure says which of these the text was read as and why it failed.

    Example:
        >>> parse_spec_string("backend: lexical\\nk1: 1.2")
        {'backend': 'lexical', 'k1': 1.2}
        >>> parse_spec_string("lexical")
        {'backend': 'lexical'}
    """
    return _string_spec(text, origin)[0]


# ---------------------------------------------------------------------- internals

# Bounds on what one config may be or expand to (YAML aliases can multiply a few bytes into
# millions of nodes): bytes of text, and nodes / nesting of the loaded structure.
MAX_SPEC_BYTES = 1 << 20
MAX_SPEC_NODES = 20_000
MAX_SPEC_DEPTH = 32

_YAML_KEY = re.compile(r"^[A-Za-z_][\w.-]*:(\s|$)")
_BACKEND_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def _spec_to_dict(spec: Any) -> tuple[dict[str, Any], str]:
    """(the mapping, how it was read: 'mapping' | 'file' | 'shorthand' | 'dict')."""
    if spec is None:
        env = os.environ.get(ENV_VAR)
        if not env or not env.strip():
            raise ConfigError(f"no reranker spec given and {ENV_VAR} is not set")
        return _string_spec(env, f"${ENV_VAR}")
    if isinstance(spec, dict):
        return check_spec_size(dict(spec), "the reranker spec"), "dict"
    if isinstance(spec, os.PathLike):
        return _read_file(Path(spec)), "file"
    if isinstance(spec, str):
        return _string_spec(spec, "reranker spec")
    raise ConfigError(f"a reranker spec must be a dict, a path or a string, not {type(spec).__name__}")


def _string_spec(text: str, origin: str) -> tuple[dict[str, Any], str]:
    text = text.strip()
    if not text:
        raise ConfigError(f"{origin} is empty")
    if len(text.encode("utf-8", "surrogatepass")) > MAX_SPEC_BYTES:
        raise ConfigError(f"{origin} is {len(text)} characters long; a spec is at most {MAX_SPEC_BYTES} bytes")
    shown = _shown(text)
    if text.startswith("{"):
        return _inline(text, origin, shown, "it starts with '{'"), "mapping"
    if "\n" in text or _YAML_KEY.match(text):
        return _inline(text, origin, shown, "it has YAML 'key: value' lines"), "mapping"
    path = Path(text).expanduser()
    try:
        is_file, is_dir = path.is_file(), path.is_dir()
    except (OSError, ValueError):
        is_file = is_dir = False
    if is_file or text.lower().endswith(_FILE_SUFFIXES):
        if not is_file:
            raise ConfigError(
                f"{origin} {shown} was read as a config file path (it ends in {path.suffix}), but the file was not found"
            )
        return _read_file(path), "file"
    if is_dir:
        raise ConfigError(
            f"{origin} {shown} is a folder; a spec is an inline mapping, a YAML/JSON config file, or "
            f"'<backend>:<model>' (e.g. 'cross-encoder:{text}')"
        )
    backend, _, model = text.partition(":")
    backend = backend.strip()
    if not _BACKEND_NAME.match(backend):
        raise ConfigError(
            f"{origin} {shown} is not an inline mapping (it does not start with '{{' and has no 'key: value' "
            f"line), not a config file (no such file, and no .yaml/.yml/.json suffix), and not the "
            f"'<backend>:<model>' shorthand ({backend!r} is not a backend name)"
        )
    data: dict[str, Any] = {"backend": backend}
    if model.strip():
        data["model"] = model.strip()
    return data, "shorthand"


def _inline(text: str, origin: str, shown: str, why: str) -> dict[str, Any]:
    loaded: Any
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError as json_exc:
        import yaml

        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            detail = f"JSON: {json_exc.msg} at column {json_exc.colno}; YAML: {_yaml_problem(exc)}"
            raise ConfigError(f"{origin} {shown} was read as an inline mapping ({why}), which failed: {detail}") from None
    where = f"{origin} (read as an inline mapping because {why})"
    return _as_mapping(loaded, where)


def _read_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        what = "a folder, not a file" if path.is_dir() else "not found"
        raise ConfigError(f"reranker config file {path}: {what}")
    try:
        size = path.stat().st_size
        if size > MAX_SPEC_BYTES:
            raise ConfigError(f"reranker config file {path} is {size} bytes; a config is at most {MAX_SPEC_BYTES} bytes")
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason}); save the config as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"cannot read reranker config file {path}: {exc.strerror or exc}") from None
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
            raise ConfigError(f"{path}: invalid YAML: {_yaml_problem(exc)}") from None
    return _as_mapping(loaded, str(path))


def _yaml_problem(exc: Exception) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else problem


def _as_mapping(loaded: Any, where: str) -> dict[str, Any]:
    if isinstance(loaded, dict) and set(loaded) == {"reranker"}:
        loaded = loaded["reranker"]
    if not isinstance(loaded, dict):
        raise ConfigError(f"{where}: a reranker config must be a mapping with a 'backend' key, not a {type(loaded).__name__}")
    return check_spec_size(dict(loaded), where)


def check_spec_size(data: dict[str, Any], where: str) -> dict[str, Any]:
    """`data` if its expanded size stays within `MAX_SPEC_NODES` nodes and `MAX_SPEC_DEPTH`
    levels (shared references, as YAML aliases make, count every time they appear), else a
    `ConfigError` naming `where`: the bound every YAML/JSON config of the project (reranker specs,
    listwise prompt files) obeys."""
    seen = 0
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if not isinstance(value, (dict, list, tuple, set)):
            continue
        if depth > MAX_SPEC_DEPTH:
            raise ConfigError(f"{where}: the config nests deeper than {MAX_SPEC_DEPTH} levels")
        items = [*value.keys(), *value.values()] if isinstance(value, dict) else list(value)
        seen += len(items)
        if seen > MAX_SPEC_NODES:
            raise ConfigError(
                f"{where}: the config expands to more than {MAX_SPEC_NODES} values (YAML aliases repeat "
                "what they point to); a reranker config is far smaller"
            )
        stack.extend((item, depth + 1) for item in items)
    return data


def _shown(text: str, limit: int = 120) -> str:
    one_line = " ".join(text.split())
    return repr(one_line if len(one_line) <= limit else one_line[: limit - 3] + "...")
