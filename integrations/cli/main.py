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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    except (RankbridgeError, ValueError, TypeError, FileNotFoundError) as exc:
        if args.verbose > 1:
            raise
        print(f"rankbridge {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
