"""Declarative configuration shared by every backend.

Each backend declares a pydantic model that extends `RerankerConfig`; `backend:` selects it.
Unknown fields are rejected so a typo never silently falls back to a default.
"""

from __future__ import annotations

import re
import typing
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretBytes, SecretStr, ValidationError

from rankbridge.rerankers.core.calibration import FusionMode
from rankbridge.rerankers.core.errors import ConfigError


class RerankerConfig(BaseModel):
    """Fields every backend accepts. Float fields reject NaN and infinity (`allow_inf_nan=False`):
    a config number is always finite."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), validate_assignment=True, allow_inf_nan=False)

    backend: str = Field(description="Which backend to use; the registry's name for it.")
    on_error: Literal["raise", "fallback"] = Field(
        "raise",
        description="What a run-time failure does: `raise` a BackendError, or `fallback` to the "
        "first-stage order (by Candidate.score if every candidate has one, else input order), "
        "recording `fallback_reason` on each result and logging one warning.",
    )
    fuse_first_stage: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="Blend weight w in [0, 1]: final relevance = w * relevance + (1 - w) * "
        "first-stage score min-max normalized over the candidate list. 0 reproduces the "
        "first-stage order, 1 the reranker's. Needs Candidate.score on every candidate.",
    )
    fusion_mode: FusionMode = Field(
        "relevance",
        description="How `fuse_first_stage` puts the two scores on one scale before blending them "
        "(LlamaIndex's fusion mode names): `relevance` blends the calibrated relevance with the "
        "min-max of the first-stage score; `relative_score` min-max normalizes the raw score and the "
        "first-stage score alike; `dist_based_score` scales each to mean +- 3 standard deviations "
        "over the list (clipped to [0, 1]); `reciprocal_rerank` blends (61 / (60 + rank)) of each "
        "order. Ignored without `fuse_first_stage`.",
    )
    cache: Literal["none", "memory", "disk"] = Field(
        "none",
        description="Score cache: `memory` (a bounded LRU in this process) or `disk` (under "
        "$RANKBRIDGE_CACHE_DIR/scores, shared across processes). Keyed by the backend's scoring "
        "identity (model content, every score-relevant field), the query and each candidate's "
        "text or image; a partial hit scores only the misses.",
    )
    cache_size: int = Field(100_000, gt=0, description="Most (query, candidate) scores the memory cache keeps.")

    # Fields that never change a raw score: left out of the score cache's key.
    NOT_SCORE_FIELDS: ClassVar[frozenset[str]] = frozenset({"on_error", "fuse_first_stage", "fusion_mode", "cache", "cache_size"})


MASK = "**********"
# Field names treated as secret even where the schema does not say SecretStr (e.g. a plugin's).
_SECRET_NAME = re.compile(r"(^|_)(api_?key|key|token|secret|password|passwd|credentials?)$", re.IGNORECASE)


def secret_fields(config_class: type[BaseModel] | None) -> set[str]:
    """Names of the fields of `config_class` whose values are secrets (typed `SecretStr` /
    `SecretBytes`, or named like a key, token or password).

    Example:
        >>> from pydantic import BaseModel, SecretStr
        >>> class Server(BaseModel):
        ...     url: str
        ...     api_key: SecretStr | None = None
        >>> sorted(secret_fields(Server))
        ['api_key']
    """
    if config_class is None:
        return set()
    names = set()
    for name, info in config_class.model_fields.items():
        if _SECRET_NAME.search(name) or _mentions_secret(info.annotation):
            names.add(name)
    return names


def _mentions_secret(annotation: Any) -> bool:
    if annotation in (SecretStr, SecretBytes):
        return True
    return any(_mentions_secret(arg) for arg in typing.get_args(annotation))


def _masked(value: Any, secrets: set[str]) -> Any:
    if isinstance(value, dict):
        return {k: (MASK if isinstance(k, str) and (k in secrets or _SECRET_NAME.search(k)) else v) for k, v in value.items()}
    return value


def format_validation_error(backend: str, error: ValidationError, config_class: type[BaseModel] | None = None) -> str:
    """One readable message naming each bad field, what it got, and what is allowed. The value
    given for a secret field (see `secret_fields`) is never shown."""
    secrets = secret_fields(config_class)
    lines = []
    for item in error.errors():
        parts = item.get("loc", ())
        loc = ".".join(str(part) for part in parts) or "<config>"
        kind = item.get("type", "")
        if kind == "extra_forbidden":
            lines.append(f"unknown field '{loc}' for backend '{backend}'")
            continue
        top = str(parts[0]) if parts else ""
        if top and (top in secrets or _SECRET_NAME.search(top)):
            got = MASK
        else:
            got = repr(_masked(item.get("input"), secrets))
        lines.append(f"field '{loc}' of backend '{backend}': {item.get('msg')} (got {got})")
    return "invalid reranker config: " + "; ".join(lines)


def validate_config(config_class: type[RerankerConfig], backend: str, data: dict[str, Any]) -> RerankerConfig:
    try:
        return config_class.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(backend, exc, config_class)) from None
