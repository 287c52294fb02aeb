"""Store options and helpers shared by every subcommand that opens the Qdrant first stage
(`index`, `search`, `eval`, `demo`, `train`)."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

from rankbridge.rerankers.core.paths import cache_dir

logger = logging.getLogger(__name__)


def positive_int(text: str) -> int:
    """argparse type: an int >= 1 (a count of results, queries or candidates)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def check_output_file(path: Path | None, flag: str) -> None:
    """Fail before any work when `path` (an output file named by `flag`) cannot be written:
    a folder, or a file in a folder that does not exist or is not writable."""
    if path is None:
        return
    if path.is_dir():
        raise ValueError(f"{flag} {path} is a folder; give a file name")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ValueError(f"{flag} {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ValueError(f"{flag} {path}: not writable")


def check_reranker_specs(specs: list[str] | None, flag: str = "--reranker") -> None:
    """Read and validate every reranker spec now (no weights load), so a typo fails before the
    first stage runs."""
    from rankbridge.rerankers.core.loader import validate_spec

    for spec in specs or []:
        validate_spec(spec)


def add_store_arguments(parser: argparse.ArgumentParser, default_store: str = "default") -> None:
    """--store / --collection / --url / --api-key, shared by every subcommand that opens a store."""
    group = parser.add_argument_group("store")
    group.add_argument("--store", type=Path, default=None,
                       help=f"embedded store folder (default: $RANKBRIDGE_CACHE_DIR/stores/{default_store})")
    group.add_argument("--collection", default="rankbridge", help="collection name (default: rankbridge)")
    group.add_argument("--url", default=None, help="a Qdrant server URL instead of the embedded store")
    group.add_argument("--api-key", default=None, help="the Qdrant server's API key")
    group.add_argument("--timeout", type=float, default=10.0, help="seconds for one request to the Qdrant server (default 10)")
    group.add_argument("--fusion", choices=["rrf", "dbsf"], default="rrf", help="hybrid fusion (default: rrf)")
    group.add_argument("--rrf-k", type=positive_int, default=2, help="RRF constant (Qdrant's default: 2)")


def open_retriever(args: argparse.Namespace, default_store: str = "default"):
    from rankbridge.integrations.first_stage.qdrant import HybridRetriever

    path = args.store if args.store is not None else cache_dir("stores", default_store)
    return HybridRetriever(
        path=None if args.url else path,
        url=args.url,
        api_key=args.api_key,
        collection_name=args.collection,
        fusion=args.fusion,
        rrf_k=args.rrf_k,
        timeout=getattr(args, "timeout", 10.0),
    )


def ensure_indexed(retriever: Any, dataset: Any) -> None:
    """Index `dataset` unless the collection already holds exactly its documents (cached)."""
    have = retriever.count()
    if have == len(dataset.corpus):
        logger.info("collection already holds %d documents; not re-indexing", have)
        return
    if have:
        logger.warning("collection holds %d documents, the corpus %d: upserting the corpus", have, len(dataset.corpus))
    retriever.index(dataset.documents())
