"""Where models and caches live. Nothing here downloads anything.

A model reference resolves, in order: an existing local path -> `$RANKBRIDGE_MODEL_DIR/<name>`
-> a Hugging Face Hub id (returned as is; loading it needs the hub or its local cache).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

MODEL_DIR_ENV = "RANKBRIDGE_MODEL_DIR"
CACHE_DIR_ENV = "RANKBRIDGE_CACHE_DIR"
DATA_DIR_ENV = "RANKBRIDGE_DATA_DIR"


def resolve_model(reference: str | os.PathLike) -> str:
    """Resolve a model reference to a local folder when one exists, else return the hub id.

    Example:
        >>> resolve_model("/no/such/dir/org/model")
        '/no/such/dir/org/model'
    """
    text = os.fspath(reference)
    path = Path(text).expanduser()
    if path.exists():
        return str(path.resolve())
    model_dir = os.environ.get(MODEL_DIR_ENV)
    if model_dir:
        for candidate in (Path(model_dir) / text, Path(model_dir) / text.split("/")[-1]):
            if candidate.exists():
                return str(candidate.resolve())
    return text


def is_local(reference: str) -> bool:
    return Path(reference).exists()


def cache_dir(*parts: str) -> Path:
    """A folder under `$RANKBRIDGE_CACHE_DIR` (default `~/.cache/rankbridge`), created on demand."""
    root = Path(os.environ.get(CACHE_DIR_ENV) or Path.home() / ".cache" / "rankbridge")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir() -> Path:
    """`$RANKBRIDGE_DATA_DIR`, else `../shared/data` beside the current directory."""
    return Path(os.environ.get(DATA_DIR_ENV) or Path.cwd().parent / "shared" / "data")


def content_hash(folder: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """A sha256 over the names and bytes of every file in `folder` (sorted): a cache key that
    changes when the weights change."""
    digest = hashlib.sha256()
    root = Path(folder)
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(root)).encode())
        with open(file, "rb") as handle:
            while block := handle.read(chunk_size):
                digest.update(block)
    return digest.hexdigest()[:16]
