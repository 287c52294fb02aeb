"""`rankbridge backends`: every backend name, the extra that installs it, and whether it imports here.

Built-in backends come from the registry table (`BUILTIN_BACKENDS`); backends registered in code
or declared by the `rankbridge.rerankers` entry-point group show the extra "plugin". Each one is
imported (`get_backend`) to tell whether it is usable in this environment; when it is not, the
one-line reason is printed (typically the extra to install).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class BackendStatus:
    """One row of `rankbridge backends`."""

    name: str
    extra: str  # the pip extra, "core" for none, "plugin" for entry points / registered backends
    imports: bool
    reason: str  # why it does not import here; "" when it does


def backend_statuses() -> list[BackendStatus]:
    """Every backend `load_reranker` knows, sorted by name, each tried for import."""
    from rankbridge.rerankers.core.registry import BUILTIN_BACKENDS, available_backends, get_backend

    rows = []
    for name in available_backends():
        builtin = BUILTIN_BACKENDS.get(name)
        extra = "plugin" if builtin is None else (builtin.extra or "core")
        try:
            get_backend(name)
        except Exception as exc:  # a broken plugin may raise anything; the listing must go on
            text = str(exc).strip().splitlines()
            reason = text[0] if text else type(exc).__name__
            rows.append(BackendStatus(name, extra, False, reason))
        else:
            rows.append(BackendStatus(name, extra, True, ""))
    return rows


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("backends", help="list every backend, its extra, and whether it imports here")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_backends)


def cmd_backends(args: argparse.Namespace) -> int:
    rows = backend_statuses()
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
        return 0
    name_w = max([len("backend")] + [len(r.name) for r in rows])
    extra_w = max([len("extra")] + [len(r.extra) for r in rows])
    print(f"{'backend':<{name_w}}  {'extra':<{extra_w}}  imports here")
    for r in rows:
        status = "yes" if r.imports else f"no: {r.reason}"
        print(f"{r.name:<{name_w}}  {r.extra:<{extra_w}}  {status}")
    return 0
