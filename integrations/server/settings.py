"""What `rankbridge serve` serves and how: the rerankers by name, auth, limits and batching.

`ServeSettings` travels to uvicorn worker processes as JSON in `RANKBRIDGE_SERVE_SETTINGS`
(`to_env` / `from_env`); the API key never goes into that JSON: it travels in
`RANKBRIDGE_API_KEY`, the variable a user sets anyway, and is a `SecretStr` everywhere else so
no repr or log line shows it.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from rankbridge.rerankers.core.errors import ConfigError
from rankbridge.rerankers.core.loader import parse_spec_string

SETTINGS_ENV = "RANKBRIDGE_SERVE_SETTINGS"
API_KEY_ENV = "RANKBRIDGE_API_KEY"

_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.\-]*)=(.+)$", re.S)


class ServedModel(BaseModel):
    """One served reranker: the name a request's `model` selects, and its spec (a config mapping)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="What a request's `model` field selects.")
    spec: dict[str, Any] = Field(description="The reranker config, as `load_reranker` takes it.")


class ServeSettings(BaseModel):
    """Everything the server needs besides host and port.

    Example:
        >>> s = ServeSettings(models=[parse_reranker_option("lexical"), parse_reranker_option("fast=identity")])
        >>> [m.name for m in s.models], s.default_model
        (['lexical', 'fast'], 'lexical')
        >>> ServeSettings.from_env({SETTINGS_ENV: s.to_env()[SETTINGS_ENV]}).models == s.models
        True
    """

    model_config = ConfigDict(extra="forbid")

    models: list[ServedModel] = Field(min_length=1, description="Served rerankers; the first is the default.")
    api_key: SecretStr | None = Field(None, description="Bearer token every rerank request must carry.")
    max_documents: int = Field(1000, ge=1, description="Most documents in one request.")
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="Largest request body accepted.")
    max_batch_pairs: int = Field(1024, ge=1, description="Most (query, document) pairs scored in one batch.")
    max_wait_ms: float = Field(2.0, ge=0, description="How long a batch waits for more requests.")
    batching: bool = Field(True, description="Score requests that arrive together in one rank_many call.")

    @field_validator("models")
    @classmethod
    def _unique_names(cls, models: list[ServedModel]) -> list[ServedModel]:
        seen: set[str] = set()
        for m in models:
            if m.name in seen:
                raise ValueError(f"two rerankers are served as '{m.name}'; name one of them with NAME=SPEC")
            seen.add(m.name)
        return models

    @property
    def default_model(self) -> str:
        return self.models[0].name

    def to_env(self) -> dict[str, str]:
        """Environment variables that carry these settings to a worker process."""
        env = {SETTINGS_ENV: self.model_dump_json(exclude={"api_key"})}
        if self.api_key is not None:
            env[API_KEY_ENV] = self.api_key.get_secret_value()
        return env

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> ServeSettings:
        environ = os.environ if environ is None else environ
        raw = environ.get(SETTINGS_ENV)
        if not raw:
            raise ConfigError(f"{SETTINGS_ENV} is not set; start the server with `rankbridge serve`")
        data = json.loads(raw)
        key = environ.get(API_KEY_ENV)
        if key:
            data["api_key"] = key
        return cls.model_validate(data)


def parse_reranker_option(text: str) -> ServedModel:
    """`--reranker [NAME=]SPEC`: SPEC is read by the one rule for string specs
    (`rankbridge.rerankers.core.loader.parse_spec_string`): an inline JSON or YAML mapping, a
    YAML/JSON config file, or the shorthand such as `cross-encoder:minilm-l6-ce-weak`.
    NAME defaults to the backend name.

    Example:
        >>> parse_reranker_option("ce=cross-encoder:minilm-l6-ce-weak")
        ServedModel(name='ce', spec={'backend': 'cross-encoder', 'model': 'minilm-l6-ce-weak'})
        >>> parse_reranker_option('{"backend": "lexical", "k1": 1.2}').name
        'lexical'
        >>> parse_reranker_option("bm25={backend: lexical, k1: 1.2}")
        ServedModel(name='bm25', spec={'backend': 'lexical', 'k1': 1.2})
    """
    text = text.strip()
    name = None
    match = _NAME.match(text)
    if match and not text.startswith("{") and not Path(text).expanduser().is_file():
        name, text = match.group(1), match.group(2).strip()
    spec = parse_spec_string(text, origin="--reranker")
    backend = spec.get("backend")
    if not isinstance(backend, str) or not backend:
        raise ConfigError(f"--reranker {text[:60]!r}: the spec needs a 'backend'")
    return ServedModel(name=name or backend, spec=spec)
