"""The errors rankbridge raises. Each names what is wrong in terms of the user's input."""

from __future__ import annotations

import importlib


class RankbridgeError(Exception):
    """Base class of every error raised by rankbridge."""


class ConfigError(RankbridgeError, ValueError):
    """A reranker spec or config is invalid: unknown backend, bad field, unreadable file."""


class CandidateError(RankbridgeError, ValueError):
    """A candidate cannot be scored by this backend (e.g. an image for a text backend)."""

    def __init__(self, message: str, index: int | None = None):
        super().__init__(message)
        self.index = index


class QueryError(RankbridgeError, ValueError):
    """The query cannot be scored as given (e.g. longer than the model's window): the caller's to
    fix, so it is raised under every `on_error` policy, never hidden by `fallback`."""


class BackendError(RankbridgeError, RuntimeError):
    """The backend failed at run time (server down, unparsable output, model error)."""


class MissingDependencyError(RankbridgeError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


def require(module: str, extra: str, package: str | None = None):
    """Import `module` or raise a one-line error naming the rankbridge extra that provides it.

    Example:
        >>> require("json", extra="core").__name__
        'json'
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        name = package or module.split(".")[0]
        raise MissingDependencyError(
            f"{name} is required for this feature but is not installed: pip install 'rankbridge[{extra}]'"
        ) from exc
