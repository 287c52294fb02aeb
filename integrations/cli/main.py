"""The `rankbridge` console script.

Subcommands live in their own modules; each module has `register(subparsers)` that adds its
parsers and sets `func` (a callable taking the parsed args and returning an exit code). Adding
a subcommand is one line in `COMMANDS`.

Example:
    rankbridge index --beir ../shared/data/beir/scifact
    rankbridge search "does vitamin D reduce fractures?"
    rankbridge eval --beir ../shared/data/beir/scifact --first-stage hybrid dense sparse \\
        --reranker lexical --depth 100 --json eval.json --plot eval.png
    rankbridge demo
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from rankbridge.rerankers.core.errors import RankbridgeError

# subcommand module -> what it registers (the names are for `--help` only)
COMMANDS: dict[str, str] = {
    "rankbridge.integrations.cli.index": "index",
    "rankbridge.integrations.cli.search": "search",
    "rankbridge.integrations.cli.eval": "eval",
    "rankbridge.integrations.cli.demo": "demo",
    "rankbridge.integrations.cli.train": "train",
    "rankbridge.integrations.cli.backends": "backends",
    "rankbridge.integrations.cli.serve": "serve",
}


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line on stderr (and exit 2), like every other error
    of the CLI; `--help` still prints the full usage. Subcommand parsers inherit the class."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="rankbridge", description="Qdrant hybrid first stage, reranking and evaluation."
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-v info, -vv debug)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        importlib.import_module(module).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.setLevel(level)  # some libraries (bm25s) set their own loggers to DEBUG on import
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - the user gets one line, never a traceback (-vv shows it)
        if args.verbose > 1:
            raise
        print(f"rankbridge {args.command}: error: {error_line(exc)}", file=sys.stderr)
        return 2


# The caller's mistakes and the failures rankbridge names itself: shown as their message alone.
_EXPECTED = (RankbridgeError, ValueError, TypeError, OSError)


def error_line(exc: BaseException) -> str:
    """One line for `exc`: its message (collapsed onto one line), prefixed by its type when it is
    not an error rankbridge expects (then the line also says how to see the traceback).

    Example:
        >>> error_line(ValueError("bad\\nvalue"))
        'bad value'
        >>> error_line(KeyError("x"))
        "unexpected KeyError: 'x' (run with -vv for the traceback)"
    """
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        message = f"{exc.filename}: {exc.strerror}"
    else:
        message = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, _EXPECTED):
        return message
    return f"unexpected {type(exc).__name__}: {message} (run with -vv for the traceback)"


if __name__ == "__main__":
    sys.exit(main())
