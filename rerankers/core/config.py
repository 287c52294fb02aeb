"""Declarative configuration shared by every backend.

Each backend declares a pydantic model that extends `RerankerConfig`; `backend:` selects it.
Unknown fields are rejected so a typo never silently falls back to a default.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rankbridge.rerankers.core.errors import ConfigError


class RerankerConfig(BaseModel):
    """Fields every backend accepts."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), validate_assignment=True)

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
    cache: Literal["none", "memory", "disk"] = Field(
        "none",
        description="Score cache: `memory` (a bounded LRU in this process) or `disk` (under "
        "$RANKBRIDGE_CACHE_DIR/scores, shared across processes). Keyed by the backend's scoring "
        "identity (model content, every score-relevant field), the query and each candidate's "
        "text or image; a partial hit scores only the misses.",
    )
    cache_size: int = Field(100_000, gt=0, description="Most (query, candidate) scores the memory cache keeps.")

    # Fields that never change a raw score: left out of the score cache's key.
    NOT_SCORE_FIELDS: ClassVar[frozenset[str]] = frozenset({"on_error", "fuse_first_stage", "cache", "cache_size"})


def format_validation_error(backend: str, error: ValidationError) -> str:
    """One readable message naming each bad field, what it got, and what is allowed."""
    lines = []
    for item in error.errors():
        loc = ".".join(str(part) for part in item.get("loc", ())) or "<config>"
        kind = item.get("type", "")
        if kind == "extra_forbidden":
            lines.append(f"unknown field '{loc}' for backend '{backend}'")
            continue
        got = item.get("input")
        lines.append(f"field '{loc}' of backend '{backend}': {item.get('msg')} (got {got!r})")
    return "invalid reranker config: " + "; ".join(lines)


def validate_config(config_class: type[RerankerConfig], backend: str, data: dict[str, Any]) -> RerankerConfig:
    try:
        return config_class.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(backend, exc)) from None
