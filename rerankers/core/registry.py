"""The backend registry: `backend:` name -> (pydantic config class, factory).

The built-in backends are a table here (`BUILTIN_BACKENDS`: name -> "module:Class", imported on
first use), so a moved module fails a test instead of silently breaking a stale install.
Third-party backends register in code with `register_backend`, or through the entry-point group
`rankbridge.rerankers`. There is no routing by substring of a model name.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from rankbridge.rerankers.core.base import Reranker
from rankbridge.rerankers.core.config import RerankerConfig
from rankbridge.rerankers.core.errors import ConfigError, MissingDependencyError

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "rankbridge.rerankers"


@dataclass(frozen=True)
class BuiltinBackend:
    """Where a built-in backend lives and which extra installs what it needs."""

    target: str  # "module:Class"
    extra: str | None  # the pip extra (`pip install rankbridge[<extra>]`), None for the core


BUILTIN_BACKENDS: dict[str, BuiltinBackend] = {
    "identity": BuiltinBackend("rankbridge.rerankers.backends.identity:IdentityReranker", None),
    "lexical": BuiltinBackend("rankbridge.rerankers.backends.lexical:LexicalReranker", None),
    "cascade": BuiltinBackend("rankbridge.rerankers.backends.cascade:CascadeReranker", None),
    "cross-encoder": BuiltinBackend("rankbridge.rerankers.backends.cross_encoder:CrossEncoderReranker", "cross-encoder"),
    "llm-yes-no": BuiltinBackend("rankbridge.rerankers.backends.llm_yes_no:LLMYesNoReranker", "llm"),
    "vlm-page": BuiltinBackend("rankbridge.rerankers.backends.vlm_page:VLMPageReranker", "vlm"),
    "ocr-page": BuiltinBackend("rankbridge.rerankers.backends.ocr_page:OCRPageReranker", "vlm"),
    "vllm-page": BuiltinBackend("rankbridge.llm_rankers.vllm_page:VLLMPageReranker", "vllm"),
    "listwise": BuiltinBackend("rankbridge.llm_rankers.listwise.reranker:ListwiseReranker", "vllm"),
    "cohere": BuiltinBackend("rankbridge.rerankers.backends.cohere:CohereReranker", "remote"),
    "voyage": BuiltinBackend("rankbridge.rerankers.backends.voyage:VoyageReranker", "remote"),
    "jina": BuiltinBackend("rankbridge.rerankers.backends.jina:JinaReranker", "remote"),
    "tei": BuiltinBackend("rankbridge.rerankers.backends.tei:TEIReranker", "remote"),
    "vllm-rerank": BuiltinBackend("rankbridge.rerankers.backends.vllm_rerank:VLLMRerankReranker", "remote"),
    "infinity": BuiltinBackend("rankbridge.rerankers.backends.infinity:InfinityReranker", "remote"),
}


@dataclass(frozen=True)
class BackendSpec:
    name: str
    config_class: type[RerankerConfig]
    factory: Callable[[RerankerConfig], Reranker]


_REGISTRY: dict[str, BackendSpec] = {}


def register_backend(
    name: str,
    factory: Callable[..., Reranker] | type[Reranker] | None = None,
    *,
    config_class: type[RerankerConfig] | None = None,
    overwrite: bool = False,
):
    """Register a backend under `name`.

    `factory` is a `Reranker` subclass (its `config_class` is used) or any callable taking
    the validated config; then `config_class` is required. Works as a class decorator too.

    Example:
        >>> from rankbridge.rerankers import Reranker, register_backend
        >>> from rankbridge.rerankers.core.base import Scores
        >>> @register_backend("shortest-first", overwrite=True)
        ... class ShortestFirst(Reranker):
        ...     def _score_batch(self, queries, candidate_lists):
        ...         return [Scores([-len(c.text) for c in cands], [1.0 / (1 + len(c.text)) for c in cands])
        ...                 for cands in candidate_lists]
        >>> from rankbridge.rerankers import load_reranker
        >>> load_reranker("shortest-first").rank("q", ["long text", "short"]).ids
        [1, 0]
    """

    def _register(obj):
        cfg = config_class
        if isinstance(obj, type) and issubclass(obj, Reranker):
            cfg = cfg or obj.config_class
            if not obj.name:
                obj.name = name
        if cfg is None:
            raise ConfigError(f"register_backend('{name}') needs config_class for a non-Reranker factory")
        if name in _REGISTRY and not overwrite and _REGISTRY[name].factory is not obj:
            raise ConfigError(f"backend '{name}' is already registered; pass overwrite=True to replace it")
        _REGISTRY[name] = BackendSpec(name=name, config_class=cfg, factory=obj)
        return obj

    if factory is None:
        return _register
    return _register(factory)


def _entry_points() -> dict[str, metadata.EntryPoint]:
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def available_backends() -> list[str]:
    """Names `load_reranker` accepts: built-in, registered, and declared by entry points."""
    return sorted(set(BUILTIN_BACKENDS) | set(_REGISTRY) | set(_entry_points()))


def _import_target(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def get_backend(name: str) -> BackendSpec:
    """The spec registered for `name`, importing a built-in backend or an entry point on first use."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    builtin = BUILTIN_BACKENDS.get(name)
    if builtin is not None:
        try:
            obj: Any = _import_target(builtin.target)
        except MissingDependencyError:
            raise
        except ImportError as exc:
            extra = f"; install it with pip install 'rankbridge[{builtin.extra}]'" if builtin.extra else ""
            raise MissingDependencyError(f"backend '{name}' could not be imported ({exc}){extra}") from exc
        register_backend(name, obj, overwrite=True)
        return _REGISTRY[name]
    ep = _entry_points().get(name)
    if ep is None:
        raise ConfigError(f"unknown backend '{name}'; known backends: {', '.join(available_backends())}")
    try:
        obj = ep.load()
    except MissingDependencyError:
        raise
    except ImportError as exc:
        raise ConfigError(
            f"backend '{name}' is declared by entry point '{ep.value}' but could not be imported: {exc}"
        ) from exc
    if isinstance(obj, BackendSpec):
        _REGISTRY[name] = obj
    elif isinstance(obj, type) and issubclass(obj, Reranker):
        register_backend(name, obj, overwrite=True)
    elif callable(obj):
        obj()  # a hook that calls register_backend itself
    if name not in _REGISTRY:
        raise ConfigError(f"entry point '{ep.value}' did not register backend '{name}'")
    return _REGISTRY[name]
