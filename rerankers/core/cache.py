"""The score cache behind `cache: memory | disk`: (query, candidate) -> (raw score, relevance).

The key is a hash of the backend's scoring identity (`Reranker.scoring_identity()`: backend name,
model content hash, every config field that can change a score), the query, and each candidate's
text and image content. A changed text, image, model file or score-relevant field is a different
key, so it can never return a stale score.

Backends whose score of a candidate depends only on (query, candidate)
(`Reranker.scores_are_pointwise()`: cross-encoders, yes/no LLMs, page VLMs) are cached one
candidate at a time, and a partial hit scores only the misses. Backends whose scores depend on the
whole list (BM25 with IDF over the candidates, rank-derived listwise scores, min-max relevance) are
cached one whole list at a time: any change to the list is a miss.

`memory` is a thread-safe LRU of `cache_size` entries per reranker. `disk` is one SQLite file in WAL
mode under `$RANKBRIDGE_CACHE_DIR/scores/`, shared by every process (writes are transactions that
wait for each other; past `DISK_MAX_ENTRIES` the oldest scores are dropped; a damaged file is moved
aside and a fresh one started).

Example:
    >>> from rankbridge.rerankers import load_reranker
    >>> reranker = load_reranker("lexical", cache="memory")
    >>> first = reranker.rank("capital of france", ["Bananas.", "Paris, capital of France."])
    >>> again = reranker.rank("capital of france", ["Bananas.", "Paris, capital of France."])
    >>> again == first, reranker.cache_stats().hits
    (True, 2)
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import math
import os
import random
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rankbridge.rerankers.core.errors import BackendError, ConfigError
from rankbridge.rerankers.core.paths import cache_dir, content_hash, file_hash
from rankbridge.rerankers.core.types import Candidate

logger = logging.getLogger(__name__)

DB_NAME = "scores.sqlite3"
DISK_MAX_ENTRIES = 5_000_000  # about 1 GB; past it the oldest tenth is dropped
_SCHEMA_VERSION = 1

# One cached value: the raw scores and relevances of one candidate (a 1-tuple each) or of a whole list.
Value = tuple[tuple[float, ...], tuple[float, ...]]
ScoreFn = Callable[[list[str], list[list[Candidate]]], list[Any]]
AsyncScoreFn = Callable[[list[str], list[list[Candidate]]], Awaitable[list[Any]]]


@dataclass(frozen=True)
class CacheStats:
    """How many candidate scores came from the cache (`hits`) and how many were computed (`misses`)."""

    hits: int = 0
    misses: int = 0

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def __add__(self, other: CacheStats) -> CacheStats:
        return CacheStats(self.hits + other.hits, self.misses + other.misses)


# ---------------------------------------------------------------------- stores


class MemoryStore:
    """A bounded, thread-safe LRU of `size` entries."""

    def __init__(self, size: int):
        self.size = size
        self._data: OrderedDict[bytes, Value] = OrderedDict()
        self._lock = threading.Lock()

    def get_many(self, keys: Sequence[bytes]) -> dict[bytes, Value]:
        found: dict[bytes, Value] = {}
        with self._lock:
            for key in keys:
                value = self._data.get(key)
                if value is not None:
                    self._data.move_to_end(key)
                    found[key] = value
        return found

    def put_many(self, items: dict[bytes, Value]) -> None:
        with self._lock:
            for key, value in items.items():
                self._data[key] = value
                self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def close(self) -> None:
        pass


class SqliteStore:
    """Scores in one SQLite file (WAL mode): many processes read and write it at once.

    Values are stored as JSON text of `[[raw...], [relevance...]]` (floats round-trip exactly
    through `repr`). Every write is one transaction; `busy_timeout` makes a writer wait for
    another process's transaction instead of failing.
    """

    def __init__(self, path: str | os.PathLike, timeout_s: float = 60.0, max_entries: int = DISK_MAX_ENTRIES):
        self.path = Path(path)
        self.timeout_s = timeout_s
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._since_check = 0
        self._conn = self._open()

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return self._connect_when_free()
        except sqlite3.OperationalError as exc:  # cannot open, read-only, locked past the timeout
            raise ConfigError(
                f"cache 'disk': cannot use the score cache {self.path} ({exc}); point $RANKBRIDGE_CACHE_DIR at a "
                "writable folder, or use cache: memory"
            ) from None
        except sqlite3.DatabaseError as exc:  # not a database, malformed
            aside = self.path.with_name(f"{self.path.name}.damaged-{int(time.time())}")
            logger.warning("score cache %s is unreadable (%s); moved it to %s and started a new one", self.path, exc, aside)
            os.replace(self.path, aside)
            for suffix in ("-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
            return self._connect_when_free()  # the new file meets the same race as any new one

    def _connect_when_free(self) -> sqlite3.Connection:
        """`_connect`, retried with backoff while another process holds the file: switching to WAL
        and creating the tables need a lock that SQLite refuses at once (its busy handler is not
        consulted there) when two processes open a new cache together."""
        deadline = time.monotonic() + self.timeout_s
        delay = 0.005
        while True:
            try:
                return self._connect()
            except sqlite3.OperationalError as exc:
                busy = "locked" in str(exc) or "busy" in str(exc)
                if not busy or time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 0.25)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self.timeout_s, check_same_thread=False, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout_s * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS scores (key BLOB PRIMARY KEY, value TEXT NOT NULL, stored REAL NOT NULL)"
            )
            conn.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(_SCHEMA_VERSION),))
            conn.execute("SELECT count(*) FROM scores WHERE key = x'00'").fetchone()
        except sqlite3.DatabaseError:
            conn.close()
            raise
        return conn

    def get_many(self, keys: Sequence[bytes]) -> dict[bytes, Value]:
        found: dict[bytes, Value] = {}
        unique = list(dict.fromkeys(keys))
        with self._lock:
            for start in range(0, len(unique), 500):  # SQLite's bound-parameter limit
                chunk = unique[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(f"SELECT key, value FROM scores WHERE key IN ({marks})", chunk).fetchall()
                for key, text in rows:
                    raw, rel = json.loads(text)
                    found[bytes(key)] = (tuple(raw), tuple(rel))
        return found

    def put_many(self, items: dict[bytes, Value]) -> None:
        if not items:
            return
        now = time.time()
        rows = [(key, json.dumps([list(raw), list(rel)]), now) for key, (raw, rel) in items.items()]
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?, ?)", rows)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            self._since_check += len(rows)
            if self._since_check >= max(1, self.max_entries // 100):
                self._since_check = 0
                self._prune()

    def _prune(self) -> None:
        """Keep the file bounded: past `max_entries`, drop the oldest stored tenth."""
        count = int(self._conn.execute("SELECT count(*) FROM scores").fetchone()[0])
        if count <= self.max_entries:
            return
        drop = count - self.max_entries + self.max_entries // 10
        self._conn.execute(
            "DELETE FROM scores WHERE key IN (SELECT key FROM scores ORDER BY stored LIMIT ?)", (drop,)
        )
        logger.info("score cache %s: dropped the %d oldest of %d scores", self.path, drop, count)

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM scores").fetchone()[0])

    def clear(self) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM scores")

    def close(self) -> None:
        with self._lock:
            self._conn.close()


# ---------------------------------------------------------------------- keys


def image_digest(image: Any) -> str | None:
    """A content hash of a candidate image, computed without the page helpers (core imports no
    other part of rankbridge). The same bytes hash the same; a PIL image hashes its mode, size and
    pixels; a lazy PDF page its `cache_key` (source file hash, page, dpi); a file path its bytes.
    None for an image whose content cannot be pinned down here (an http(s) URL): never cached.
    """
    digest = hashlib.sha256()
    cache_key = getattr(image, "cache_key", None)
    if isinstance(cache_key, str):
        digest.update(b"page:" + cache_key.encode())
    elif hasattr(image, "tobytes") and hasattr(image, "mode") and hasattr(image, "size"):
        digest.update(f"pil:{image.mode}:{image.size[0]}x{image.size[1]}:".encode())
        digest.update(image.tobytes())
    elif isinstance(image, (bytes, bytearray, memoryview)):
        digest.update(b"bytes:" + bytes(image))
    elif isinstance(image, os.PathLike):
        digest.update(b"bytes:" + Path(image).expanduser().read_bytes())
    elif isinstance(image, str):
        text = image.strip()
        if text.startswith(("http://", "https://")):
            return None
        if text.startswith("data:"):
            digest.update(_b64(text.partition(",")[2]))
        elif len(text) < 4096 and Path(text).expanduser().is_file():
            digest.update(b"bytes:" + Path(text).expanduser().read_bytes())
        else:
            digest.update(_b64(text))
    else:
        return None
    return digest.hexdigest()[:32]


def _b64(text: str) -> bytes:
    # Decoded bytes hash like the same bytes given raw; a string that is not strict base64 hashes as itself.
    try:
        return b"bytes:" + base64.b64decode("".join(text.split()), validate=True)
    except (ValueError, TypeError):
        return b"text:" + text.encode()


def path_fingerprint(*references: str | os.PathLike | None) -> str:
    """`content_hash` of each model folder (a file: of its bytes), for `model_fingerprint()`; a
    reference that is not on disk (a hub id) stands for itself. Joined with "+"; None is skipped."""
    parts = []
    for ref in references:
        if ref is None:
            continue
        path = Path(ref).expanduser()
        if path.is_dir():
            parts.append(content_hash(path))
        elif path.is_file():
            parts.append(file_hash(path))
        else:
            parts.append(f"ref:{os.fspath(ref)}")
    return "+".join(parts)


def identity_digest(identity: dict[str, Any]) -> str:
    """A stable hash of a scoring identity (a JSON-able mapping)."""
    text = json.dumps(identity, sort_keys=True, default=repr, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _key(*parts: Any) -> bytes:
    text = json.dumps(parts, separators=(",", ":"), ensure_ascii=False, default=repr)
    return hashlib.sha256(text.encode()).digest()[:20]


# ---------------------------------------------------------------------- the cache


class ScoreCache:
    """Look up (query, candidate) scores before calling a backend's scoring function; score only
    the misses (grouped per query, in one call so the backend still shares its batches); store them.

    Args:
        identity: returns the backend's scoring identity; called for every batch, so a config
            field changed after construction is part of the key from then on.
        store: a `MemoryStore` or `SqliteStore`.
        pointwise: whether a candidate's score depends only on (query, candidate); if not, whole
            lists are cached.
        name: the backend's name, for messages.
    """

    def __init__(self, identity: Callable[[], dict[str, Any]], store: MemoryStore | SqliteStore, pointwise: bool, name: str = ""):
        self._identity = identity
        self.store = store
        self.pointwise = pointwise
        self.name = name
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    @classmethod
    def for_reranker(cls, reranker: Any) -> ScoreCache:
        """The cache `reranker.config.cache` asks for: `memory` (a per-reranker LRU of `cache_size`)
        or `disk` (the shared SQLite file under `$RANKBRIDGE_CACHE_DIR/scores/`)."""
        config = reranker.config
        if config.cache == "memory":
            store: MemoryStore | SqliteStore = MemoryStore(config.cache_size)
        elif config.cache == "disk":
            store = SqliteStore(cache_dir("scores") / DB_NAME)
        else:
            raise ValueError(f"cache {config.cache!r} is not a score cache; use 'memory' or 'disk'")
        pointwise = bool(getattr(reranker, "scores_are_pointwise", lambda: False)())
        return cls(reranker.scoring_identity, store, pointwise, name=config.backend)

    @property
    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(self._hits, self._misses)

    def clear(self) -> None:
        """Forget every stored score (of every backend, for the shared disk store) and the counters."""
        self.store.clear()
        with self._lock:
            self._hits = self._misses = 0

    def close(self) -> None:
        self.store.close()

    # ------------------------------------------------------------------ scoring

    def score_batch(self, queries: list[str], candidate_lists: list[list[Candidate]], score_fn: ScoreFn) -> list[Any]:
        plan = self._plan(queries, candidate_lists)
        if plan.miss_queries:
            computed = score_fn(plan.miss_queries, plan.miss_lists)
            self._store(plan, computed)
        return self._assemble(plan)

    async def ascore_batch(
        self, queries: list[str], candidate_lists: list[list[Candidate]], score_fn: AsyncScoreFn
    ) -> list[Any]:
        if isinstance(self.store, SqliteStore):
            plan = await asyncio.to_thread(self._plan, queries, candidate_lists)
        else:
            plan = self._plan(queries, candidate_lists)
        if plan.miss_queries:
            computed = await score_fn(plan.miss_queries, plan.miss_lists)
            if isinstance(self.store, SqliteStore):
                await asyncio.to_thread(self._store, plan, computed)
            else:
                self._store(plan, computed)
        return self._assemble(plan)

    # ------------------------------------------------------------------ internals

    def _plan(self, queries: list[str], candidate_lists: list[list[Candidate]]) -> _Plan:
        ident = identity_digest(self._identity())
        plan = _Plan(queries, candidate_lists, self.pointwise)
        if self.pointwise:
            for qi, (query, cands) in enumerate(zip(queries, candidate_lists)):
                keys = []
                for cand in cands:
                    ck = _candidate_key(cand)
                    keys.append(None if ck is None else _key(ident, query, *ck))
                plan.keys.append(keys)
        else:
            for query, cands in zip(queries, candidate_lists):
                parts = [_candidate_key(c) for c in cands]
                if any(p is None for p in parts):
                    plan.keys.append([None])
                else:
                    plan.keys.append([_key(ident, query, [(*p, c.score) for p, c in zip(parts, cands)])])
        found = self.store.get_many([k for keys in plan.keys for k in keys if k is not None])
        plan.found = found
        hits = misses = 0
        for qi, keys in enumerate(plan.keys):
            n = len(candidate_lists[qi])
            if not self.pointwise:
                if keys[0] is not None and keys[0] in found and len(found[keys[0]][0]) == n:
                    hits += n
                else:
                    misses += n
                    plan.add_miss(qi, list(range(n)), keys)
                continue
            missing: list[int] = []
            seen: dict[bytes, int] = {}
            for ci, key in enumerate(keys):
                if key is not None and key in found:
                    hits += 1
                elif key is not None and key in seen:
                    plan.aliases[(qi, ci)] = (qi, seen[key])  # a duplicate within the list: score it once
                    misses += 1
                else:
                    if key is not None:
                        seen[key] = ci
                    missing.append(ci)
                    misses += 1
            if missing:
                plan.add_miss(qi, missing, keys)
        with self._lock:
            self._hits += hits
            self._misses += misses
        return plan

    def _store(self, plan: _Plan, computed: list[Any]) -> None:
        if len(computed) != len(plan.miss_queries):
            raise BackendError(
                f"backend '{self.name}' returned {len(computed)} score lists for {len(plan.miss_queries)} queries"
            )
        fresh: dict[bytes, Value] = {}
        for (qi, positions), scores in zip(plan.miss_positions, computed):
            raw = [float(x) for x in scores.scores]
            rel = [float(x) for x in scores.relevance]
            if len(raw) != len(positions) or len(rel) != len(positions):
                raise BackendError(
                    f"backend '{self.name}' returned {len(raw)} scores and {len(rel)} relevances "
                    f"for {len(positions)} candidates"
                )
            for pos, r, v in zip(positions, raw, rel):
                plan.computed[(qi, pos)] = (r, v)
            if any(math.isnan(x) for x in raw + rel):
                continue  # never cache a NaN: the base class reports it as an error
            keys = plan.keys[qi]
            if self.pointwise:
                for pos, r, v in zip(positions, raw, rel):
                    if keys[pos] is not None:
                        fresh[keys[pos]] = ((r,), (v,))
            elif keys[0] is not None:
                fresh[keys[0]] = (tuple(raw), tuple(rel))
        try:
            self.store.put_many(fresh)
        except sqlite3.Error as exc:  # a full disk or a read-only cache folder must not fail the ranking
            logger.warning("score cache: could not store %d scores (%s)", len(fresh), exc)

    def _assemble(self, plan: _Plan) -> list[Any]:
        from rankbridge.rerankers.core.base import Scores

        out = []
        for qi, cands in enumerate(plan.candidate_lists):
            keys = plan.keys[qi]
            if not self.pointwise:
                if (qi, 0) in plan.computed or not cands:
                    pairs = [plan.computed[(qi, ci)] for ci in range(len(cands))]
                    out.append(Scores([p[0] for p in pairs], [p[1] for p in pairs]))
                else:
                    raw, rel = plan.found[keys[0]]
                    out.append(Scores(list(raw), list(rel)))
                continue
            raw_list, rel_list = [], []
            for ci in range(len(cands)):
                source = plan.aliases.get((qi, ci), (qi, ci))
                if source in plan.computed:
                    r, v = plan.computed[source]
                else:
                    (r,), (v,) = plan.found[keys[ci]]
                raw_list.append(r)
                rel_list.append(v)
            out.append(Scores(raw_list, rel_list))
        return out


class _Plan:
    """What one batch needs: the key of every candidate, what was found, what must be scored."""

    def __init__(self, queries: list[str], candidate_lists: list[list[Candidate]], pointwise: bool):
        self.queries = queries
        self.candidate_lists = candidate_lists
        self.pointwise = pointwise
        self.keys: list[list[bytes | None]] = []
        self.found: dict[bytes, Value] = {}
        self.miss_queries: list[str] = []
        self.miss_lists: list[list[Candidate]] = []
        self.miss_positions: list[tuple[int, list[int]]] = []
        self.aliases: dict[tuple[int, int], tuple[int, int]] = {}
        self.computed: dict[tuple[int, int], tuple[float, float]] = {}

    def add_miss(self, qi: int, positions: list[int], keys: list[bytes | None]) -> None:
        self.miss_queries.append(self.queries[qi])
        self.miss_lists.append([self.candidate_lists[qi][p] for p in positions])
        self.miss_positions.append((qi, positions))


def _candidate_key(candidate: Candidate) -> tuple[str | None, str | None] | None:
    """(text, image hash) of a candidate; None when its image cannot be hashed (never cached)."""
    image = None
    if candidate.image is not None:
        image = image_digest(candidate.image)
        if image is None:
            return None
    return (candidate.text, image)


__all__ = ["CacheStats", "MemoryStore", "ScoreCache", "SqliteStore", "identity_digest", "image_digest", "path_fingerprint"]
