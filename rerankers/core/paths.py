"""Where models and caches live. Nothing here downloads anything.

A model reference resolves, in order: an existing local path -> `$RANKBRIDGE_MODEL_DIR/<name>`
-> a Hugging Face Hub id (returned as is; loading it needs the hub or its local cache).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rankbridge.rerankers.core.errors import ConfigError

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


# A name that becomes one folder or file name under a folder of ours: never a path (no
# separators, no "..", no leading dot or dash).
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}$")


def plain_name(name: Any, what: str = "name") -> str:
    """`name` if it can safely become a folder or file name: letters, digits, ``_``, ``-`` and
    ``.``, not starting with ``.`` or ``-``, at most 255 characters; else a `ConfigError`
    naming `what`. Every user-given name that the project joins onto a path goes through this.

    Example:
        >>> plain_name("scifact-v2", "collection_name")
        'scifact-v2'
        >>> plain_name("../../x", "collection_name")
        Traceback (most recent call last):
        ...
        rankbridge.rerankers.core.errors.ConfigError: collection_name '../../x' is not a plain name: use letters, digits, '_', '-' and '.' (not first), at most 255 characters; it becomes a file or folder name
    """
    if not isinstance(name, str) or not _PLAIN_NAME.match(name):
        raise ConfigError(
            f"{what} {name!r} is not a plain name: use letters, digits, '_', '-' and '.' (not first), "
            "at most 255 characters; it becomes a file or folder name"
        )
    return name


def _update_from_file(digest, path: Path, chunk_size: int) -> None:
    with open(path, "rb") as handle:
        while block := handle.read(chunk_size):
            digest.update(block)


def file_hash(path: str | os.PathLike, length: int = 16, chunk_size: int = 1 << 20) -> str:
    """The first `length` hex digits of the sha256 of one file's bytes: a cache key that changes
    when the file changes.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = Path(tmp) / "weights.bin"
        ...     _ = path.write_bytes(b"abc")
        ...     file_hash(path)
        'ba7816bf8f01cfea'
    """
    digest = hashlib.sha256()
    _update_from_file(digest, Path(path), chunk_size)
    return digest.hexdigest()[:length]


def content_hash(folder: str | os.PathLike, length: int = 16, chunk_size: int = 1 << 20) -> str:
    """The first `length` hex digits of a sha256 over the names and bytes of every file in
    `folder` (sorted): a cache key that changes when the weights change."""
    digest = hashlib.sha256()
    root = Path(folder)
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(root)).encode())
        _update_from_file(digest, file, chunk_size)
    return digest.hexdigest()[:length]


@contextmanager
def atomic_file(target: str | os.PathLike, mode: int = 0o644) -> Iterator[Path]:
    """Yield a temporary path beside `target` (same folder, same suffix) to write; when the block
    ends without an exception it is renamed onto `target` (atomic on one file system), else
    removed. A crash or a concurrent reader never sees a truncated `target`. The folder is
    created when missing; the finished file gets `mode`.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     with atomic_file(Path(tmp) / "model.onnx") as part:
        ...         _ = part.write_bytes(b"graph")        # e.g. torch.onnx.export(..., str(part))
        ...     sorted(p.name for p in Path(tmp).iterdir())
        ['model.onnx']
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=target.suffix or ".tmp", dir=target.parent)
    os.close(handle)
    part = Path(name)
    try:
        yield part
        os.replace(part, target)
        os.chmod(target, mode)
    finally:
        part.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` through `atomic_file`: readers see the old file or the new one."""
    with atomic_file(path) as part:
        part.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """`atomic_write_bytes` for text.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     atomic_write_text(Path(tmp) / "page.txt", "OCR text")
        ...     (Path(tmp) / "page.txt").read_text()
        'OCR text'
    """
    atomic_write_bytes(path, text.encode(encoding))


@contextmanager
def atomic_folder(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a hidden staging folder beside `target` to fill; when the block ends without an
    exception it is made readable (folders 0755, files 0644) and renamed to `target`, else removed.
    So an interrupted build never leaves a half-written `target` that a later run would trust.

    Raises:
        FileExistsError: `target` appeared meanwhile as a non-empty folder (another process
            finished first); the staging folder is removed and theirs is kept.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     with atomic_folder(Path(tmp) / "converted") as staging:
        ...         _ = (staging / "config.json").write_text("{}")
        ...     sorted(p.name for p in Path(tmp).iterdir()), (Path(tmp) / "converted" / "config.json").is_file()
        (['converted'], True)
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield staging
        _make_readable(staging)
        try:
            os.replace(staging, target)
        except OSError as exc:
            if target.is_dir() and any(target.iterdir()):
                raise FileExistsError(f"{target} was created by another process meanwhile") from exc
            raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _make_readable(folder: Path) -> None:
    # mkdtemp creates the folder 0700; caches are shared by every tool of this user (and a vLLM server).
    folder.chmod(0o755)
    for path in folder.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
