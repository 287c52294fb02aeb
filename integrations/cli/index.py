"""`rankbridge index`: index a BEIR corpus into the Qdrant hybrid store (idempotent)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rankbridge.integrations.cli._store import add_store_arguments, open_retriever


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("index", help="index a BEIR corpus into the store (idempotent)")
    p.add_argument("--beir", type=Path, required=True, help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/)")
    add_store_arguments(p)
    p.set_defaults(func=cmd_index)


def cmd_index(args: argparse.Namespace) -> int:
    from rankbridge.integrations.evaluation.beir import load_beir

    dataset = load_beir(args.beir)
    with open_retriever(args) as retriever:
        count = retriever.index(dataset.documents())
        print(f"indexed {count} documents from {args.beir} into collection {args.collection!r} ({retriever.count()} in store)")
    return 0
