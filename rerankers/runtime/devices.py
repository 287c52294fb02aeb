"""One device and dtype resolver for every torch-backed model."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator

from rankbridge.rerankers.core.errors import ConfigError, require

_DEVICES = ("auto", "cpu", "cuda", "mps")


def _check_device(value: str) -> str:
    base, _, index = value.partition(":")
    if base not in _DEVICES or (index and (base != "cuda" or not index.isdigit())):
        raise ValueError("must be one of auto, cpu, cuda, cuda:<n>, mps")
    return value


Device = Annotated[str, AfterValidator(_check_device)]
"""A config field type: `auto`, `cpu`, `cuda`, `cuda:<n>` or `mps`."""


def resolve_device(device: str | None, extra: str, runtime: str = "torch") -> str:
    """`auto` (or None) -> cuda, then mps, then cpu (ONNX Runtime: cpu); anything else as given,
    after checking that torch can see a CUDA device when one is asked for."""
    if device not in (None, "auto"):
        if device.startswith("cuda") and runtime == "torch":
            torch = require("torch", extra=extra)
            if not torch.cuda.is_available():
                raise ConfigError(f"device '{device}' was asked for, but torch sees no CUDA device")
        return device
    if runtime == "onnx":
        return "cpu"
    torch = require("torch", extra=extra)
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def torch_dtype(name: str, device: str, extra: str, gpu_default: str = "bfloat16") -> Any:
    """The torch dtype for a config's `dtype` field; `auto` is `gpu_default` on CUDA, float32 elsewhere."""
    torch = require("torch", extra=extra)
    if name == "auto":
        name = gpu_default if str(device).startswith("cuda") else "float32"
    table = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if name not in table:
        raise ConfigError(f"dtype must be one of auto, {', '.join(table)}; got {name!r}")
    return table[name]


__all__ = ["Device", "resolve_device", "torch_dtype"]
