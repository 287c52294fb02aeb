"""Generate the README's table of every config field of every backend from the pydantic models.

    python -m rankbridge.rerankers.core.config_table            # print the table
    python -m rankbridge.rerankers.core.config_table --check README.md   # exit 1 if the README's copy drifted
"""

from __future__ import annotations

import argparse
import re
import sys
import typing
from pathlib import Path

from pydantic_core import PydanticUndefined

from rankbridge.rerankers.core.config import RerankerConfig
from rankbridge.rerankers.core.errors import RankbridgeError
from rankbridge.rerankers.core.registry import BUILTIN_BACKENDS, get_backend

START = "<!-- config-table:start -->"
END = "<!-- config-table:end -->"


def _type_name(annotation) -> str:
    if typing.get_origin(annotation) is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in typing.get_args(annotation))
    text = getattr(annotation, "__name__", None) or str(annotation)
    return text.replace("typing.", "").replace("|", "\\|")


def _row(backend: str, field_name: str, field) -> str:
    default = "required" if field.default is PydanticUndefined else f"`{field.default!r}`"
    description = (field.description or "").replace("|", "\\|").replace("\n", " ")
    return f"| {backend} | `{field_name}` | {_type_name(field.annotation)} | {default} | {description} |"


def config_table() -> str:
    common = RerankerConfig.model_fields
    rows = ["| backend | field | type | default | description |", "|---|---|---|---|---|"]
    rows += [_row("every backend", name, field) for name, field in common.items() if name != "backend"]
    # Built-in backends only: the README documents this project, not whatever a test or a third-party
    # plugin registered in this process (their rows would make the table depend on what ran before).
    for name in sorted(BUILTIN_BACKENDS):
        try:
            config_class = get_backend(name).config_class
        except RankbridgeError as exc:  # a backend whose module is not importable here
            rows.append(f"| `{name}` | | | | (not importable: {exc}) |")
            continue
        rows += [_row(f"`{name}`", f, field) for f, field in config_class.model_fields.items() if f not in common]
    return "\n".join(rows)


def replace_table(readme_text: str, table: str) -> str:
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(readme_text):
        raise ValueError(f"README has no {START} ... {END} block")
    return pattern.sub(lambda _: f"{START}\n{table}\n{END}", readme_text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", type=Path, help="README to compare against; exit 1 when it drifted")
    parser.add_argument("--write", type=Path, help="README whose table block is rewritten in place")
    args = parser.parse_args(argv)
    table = config_table()
    if args.write:
        args.write.write_text(replace_table(args.write.read_text(), table))
    elif args.check:
        text = args.check.read_text()
        if replace_table(text, table) != text:
            sys.stderr.write(f"{args.check}: config table is out of date; run python -m rankbridge.rerankers.core.config_table --write {args.check}\n")
            return 1
    else:
        sys.stdout.write(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
