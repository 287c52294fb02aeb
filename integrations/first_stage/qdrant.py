"""`HybridRetriever`: the Qdrant first stage — dense + BM25 sparse in one collection, fused by RRF or DBSF.

Embedded by default (Qdrant's own engine in-process through `qdrant-edge-py`: measured faster
than qdrant-client's local mode, see benchmarks/store_compare.py); `url=` (and `api_key=`) use
a Qdrant server through `qdrant-client`, the path to take when one machine is not enough. The
two stores differ only in how a request is written down; the retriever never branches on them.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rankbridge.rerankers.core.errors import BackendError, ConfigError, require
from rankbridge.rerankers.core.paths import plain_name
from rankbridge.rerankers.core.types import Candidate

from rankbridge.integrations.first_stage.embeddings import SparseVector

logger = logging.getLogger(__name__)

Mode = Literal["hybrid", "dense", "sparse"]
Fusion = Literal["rrf", "dbsf"]
MODES = ("hybrid", "dense", "sparse")
FUSIONS = ("rrf", "dbsf")
DENSE = "dense"
SPARSE = "bm25"
_ID_NAMESPACE = uuid.UUID("6f1c7c38-5a0b-4d8e-9a51-2f8f0d3b7e11")
_EXTRA = "qdrant"
def check_collection_name(name: Any) -> str:
    """`name` if it is a valid collection name, else a `ConfigError`. A collection name becomes a
    folder (embedded store) or a URL path segment (server): one plain name, never a path
    (`rankbridge.rerankers.core.paths.plain_name`).

    Example:
        >>> check_collection_name("scifact-v2")
        'scifact-v2'
        >>> check_collection_name("../../x")
        Traceback (most recent call last):
        ...
        rankbridge.rerankers.core.errors.ConfigError: collection_name '../../x' is not a plain name: use letters, digits, '_', '-' and '.' (not first), at most 255 characters; it becomes a file or folder name
    """
    return plain_name(name, "collection_name")


def point_id(doc_id: Any) -> str:
    """The Qdrant point id of a document id: a UUID5, so re-indexing the same id overwrites."""
    return str(uuid.uuid5(_ID_NAMESPACE, f"{type(doc_id).__name__}:{doc_id}"))


@dataclass
class _Request:
    dense: list[float] | None
    sparse: SparseVector | None
    mode: str
    fusion: str
    rrf_k: int
    limit: int
    prefetch_limit: int
    filter: Any


@dataclass
class _Hit:
    score: float
    payload: dict[str, Any]


class HybridRetriever:
    """Dense + BM25 hybrid retrieval over Qdrant, returning `Candidate`s ready for a reranker.

    Args:
        path: folder of the embedded store (created on demand, kept between runs). None: a
            temporary folder removed by `close()`. Ignored when `url` is given.
        url: a Qdrant server (``http://host:6333``); uses qdrant-client.
        api_key: the server's API key.
        store: "edge" (default for embedded: Qdrant's engine in-process, `qdrant-edge-py`) or
            "qdrant-client" (qdrant-client's local mode with `path`, or the server with `url`).
        collection_name: the collection (for the embedded store, a sub-folder of `path`).
        dense_embedder / sparse_embedder: objects with `embed_documents` / `embed_queries`
            (see `rankbridge.integrations.first_stage.embeddings`); default: int8 ONNX all-MiniLM-L6-v2 and
            fastembed's `Qdrant/bm25`, both offline.
        mode: "hybrid" (dense and sparse prefetch, fused), "dense" or "sparse".
        fusion: "rrf" (reciprocal rank fusion) or "dbsf" (distribution-based score fusion).
        rrf_k: the RRF constant. Qdrant scores the hit at 0-based position p of each list as
            1 / (k + p); its default k is 2 (the RRF paper's 60 counts positions from 1).
        prefetch_limit: hits taken from each of dense and sparse before fusion (default: the
            search `limit`).
        batch_size: documents embedded and upserted per batch by `index`.
        search_threads: threads one query may use in the embedded store (qdrant-edge's
            `max_search_threads`; None: one per CPU). 1 by default: a hybrid query took a
            quarter of the time with one thread than with two on a busy 2-core machine.
        show_progress: tqdm progress bars for `index` and `search_many`.
        timeout: seconds for one request to a Qdrant server (`url=`); a closed or silent
            port is a `BackendError` naming the URL, not a hang.

    Raises:
        ConfigError: a bad argument, a `collection_name` that is not a plain name (it becomes
            a folder), or a `path` that exists but is not a folder.
        BackendError: the Qdrant server at `url` cannot be reached or fails a request.

    Example:
        >>> retriever = HybridRetriever()
        >>> retriever.index([{"id": "d1", "text": "Qdrant fuses dense and sparse results."},
        ...                  {"id": "d2", "text": "Bananas are yellow."}])
        2
        >>> retriever.search("hybrid search fusion", limit=1)[0].id
        'd1'
        >>> retriever.close()
    """

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        *,
        url: str | None = None,
        api_key: str | None = None,
        store: Literal["edge", "qdrant-client"] | None = None,
        collection_name: str = "rankbridge",
        dense_embedder: Any = None,
        sparse_embedder: Any = None,
        mode: Mode = "hybrid",
        fusion: Fusion = "rrf",
        rrf_k: int = 2,
        prefetch_limit: int | None = None,
        batch_size: int = 256,
        search_threads: int | None = 1,
        show_progress: bool = True,
        timeout: float = 10.0,
    ):
        check_collection_name(collection_name)
        _check_choice("mode", mode, MODES)
        _check_choice("fusion", fusion, FUSIONS)
        if isinstance(rrf_k, bool) or not isinstance(rrf_k, int) or rrf_k < 1:
            raise ConfigError(f"rrf_k must be a positive int, got {rrf_k!r}")
        if prefetch_limit is not None and prefetch_limit < 1:
            raise ConfigError(f"prefetch_limit must be a positive int or None, got {prefetch_limit!r}")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be a positive int, got {batch_size!r}")
        if store is None:
            store = "qdrant-client" if url else "edge"
        _check_choice("store", store, ("edge", "qdrant-client"))
        if store == "edge" and url:
            raise ConfigError("url= needs store='qdrant-client' (a server is reached through qdrant-client)")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < float("inf"):
            raise ConfigError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if path is not None and not url and Path(path).exists() and not Path(path).is_dir():
            raise ConfigError(f"store path {path} exists and is not a folder; give a folder for the embedded store")
        # Reach the store before loading the embedders: a bad server fails in a second, not after a model load.
        client = None
        where = f"Qdrant server {url}" if url else f"qdrant-client store at {path}"
        if store == "qdrant-client" and url:
            client = _make_client(None, url, api_key, timeout)
            _call(where, "connecting", client.get_collections)
        if dense_embedder is None:
            from rankbridge.integrations.first_stage.embeddings import OnnxDenseEmbedder

            dense_embedder = OnnxDenseEmbedder()
        if sparse_embedder is None:
            from rankbridge.integrations.first_stage.embeddings import Bm25Embedder

            sparse_embedder = Bm25Embedder()
        self.dense_embedder = dense_embedder
        self.sparse_embedder = sparse_embedder
        self.mode = mode
        self.fusion = fusion
        self.rrf_k = rrf_k
        self.prefetch_limit = prefetch_limit
        self.batch_size = batch_size
        self.show_progress = show_progress
        self.collection_name = collection_name
        self._tmp = None
        if path is None and not url:
            self._tmp = tempfile.TemporaryDirectory(prefix="rankbridge-qdrant-")
            path = self._tmp.name
        self.path = None if url else Path(path)
        signature = {
            "dense": getattr(dense_embedder, "identity", type(dense_embedder).__name__),
            "sparse": getattr(sparse_embedder, "identity", type(sparse_embedder).__name__),
            "dim": int(dense_embedder.dim),
        }
        if store == "edge":
            self._store: _EdgeStore | _ClientStore = _EdgeStore(self.path / collection_name, signature, search_threads)
        else:
            client = client or _make_client(self.path, url, api_key, timeout)
            self._store = _ClientStore(client, collection_name, signature, where)

    # ------------------------------------------------------------------ indexing

    def index(self, documents: Iterable[Candidate | Mapping[str, Any]]) -> int:
        """Embed and upsert documents; re-indexing an id replaces its point (never duplicates).

        Args:
            documents: `Candidate`s (with `id` and `text`) or mappings with `id` (or `_id`),
                `text`, and optionally `title` and `metadata`. Metadata is stored as the
                point's payload and comes back as `Candidate.metadata`.

        Returns:
            The number of documents indexed.
        """
        docs = [_as_document(i, d) for i, d in enumerate(documents)]
        if not docs:
            return 0
        progress = None
        if self.show_progress:
            from tqdm.auto import tqdm

            progress = tqdm(total=len(docs), desc="indexing", unit="doc")
        try:
            for start in range(0, len(docs), self.batch_size):
                batch = docs[start : start + self.batch_size]
                texts = [d.text for d in batch]
                dense = np.asarray(self.dense_embedder.embed_documents(texts), dtype=np.float32)
                sparse = self.sparse_embedder.embed_documents(texts)
                payloads = [{**d.metadata, "doc_id": d.id, "text": d.text} for d in batch]
                self._store.upsert([point_id(d.id) for d in batch], dense, sparse, payloads)
                if progress is not None:
                    progress.update(len(batch))
        finally:
            if progress is not None:
                progress.close()
        self._store.finish()
        return len(docs)

    def count(self) -> int:
        """The number of documents in the collection."""
        return self._store.count()

    def __len__(self) -> int:
        return self.count()

    # ------------------------------------------------------------------ search

    def search(
        self,
        query: str,
        limit: int = 100,
        filter: Any = None,
        mode: Mode | None = None,
    ) -> list[Candidate]:
        """The best `limit` documents for `query`, best first.

        Args:
            query: the query text.
            limit: how many candidates to return.
            filter: a payload filter passed through to Qdrant: a mapping ``{field: value}``
                (a list value matches any of its items), a `qdrant_client.models.Filter`, or
                (embedded store) a `qdrant_edge.Filter`.
            mode: override the retriever's mode for this call.

        Returns:
            `Candidate`s with `id` (the document id), `text`, `score` (the first-stage score:
            fused RRF/DBSF score, cosine similarity or BM25) and `metadata` (the payload),
            best first; equal scores are ordered by document id, so results are reproducible.
        """
        return self.search_many([query], limit=limit, filter=filter, mode=mode, show_progress=False)[0]

    def search_many(
        self,
        queries: Sequence[str],
        limit: int = 100,
        filter: Any = None,
        mode: Mode | None = None,
        batch_size: int = 64,
        show_progress: bool | None = None,
    ) -> list[list[Candidate]]:
        """`search` for many queries: queries are embedded and sent to Qdrant in batches."""
        if isinstance(queries, str):
            raise TypeError("search_many takes a list of queries; use search() for one")
        mode = mode or self.mode
        _check_choice("mode", mode, MODES)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive int, got {limit!r}")
        queries = list(queries)
        for i, q in enumerate(queries):
            if not isinstance(q, str):
                raise TypeError(f"query {i} must be a string, got {type(q).__name__}")
        show = self.show_progress if show_progress is None else show_progress
        progress = None
        if show and len(queries) > batch_size:
            from tqdm.auto import tqdm

            progress = tqdm(total=len(queries), desc=f"{mode} search", unit="query")
        results: list[list[Candidate]] = []
        prefetch = max(limit, self.prefetch_limit or 0)
        try:
            for start in range(0, len(queries), batch_size):
                batch = queries[start : start + batch_size]
                dense = self.dense_embedder.embed_queries(batch) if mode != "sparse" else [None] * len(batch)
                sparse = self.sparse_embedder.embed_queries(batch) if mode != "dense" else [None] * len(batch)
                requests = [
                    _Request(
                        dense=None if d is None else [float(x) for x in d],
                        sparse=s,
                        mode=mode,
                        fusion=self.fusion,
                        rrf_k=self.rrf_k,
                        limit=limit,
                        prefetch_limit=prefetch,
                        filter=filter,
                    )
                    for d, s in zip(dense, sparse)
                ]
                for hits in self._store.query(requests):
                    candidates = [_candidate(h) for h in hits]
                    # equal fused scores (RRF gives many) come back in no fixed order: order them by id
                    candidates.sort(key=lambda c: (-c.score, str(c.id)))
                    results.append(candidates)
                if progress is not None:
                    progress.update(len(batch))
        finally:
            if progress is not None:
                progress.close()
        return results

    # ------------------------------------------------------------------ framework adapters

    def as_llama_index(
        self,
        similarity_top_k: int | None = None,
        filter: Any = None,
        mode: Mode | None = None,
        *,
        limit: int | None = None,
    ):
        """This retriever as a LlamaIndex `BaseRetriever`
        (`rankbridge.integrations.llama_index.RankbridgeHybridRetriever`): nodes carry the payload
        as metadata; `similarity_top_k` (LlamaIndex's name; `limit` is an alias) nodes, 100 by default.

        Example:
            >>> retriever = HybridRetriever()
            >>> _ = retriever.index([{"id": "d1", "text": "Qdrant fuses dense and sparse results."}])
            >>> retriever.as_llama_index(similarity_top_k=5).retrieve("fusion")[0].node.node_id
            'd1'
        """
        from rankbridge.integrations.llama_index import RankbridgeHybridRetriever

        top_k = _one_count("similarity_top_k", similarity_top_k, limit)
        return RankbridgeHybridRetriever(self, similarity_top_k=top_k, filter=filter, mode=mode)

    def as_langchain(self, k: int | None = None, filter: Any = None, mode: Mode | None = None, *, limit: int | None = None):
        """This retriever as a LangChain `BaseRetriever`
        (`rankbridge.integrations.langchain.RankbridgeHybridRetriever`): documents carry the
        payload as metadata; `k` (LangChain's name; `limit` is an alias) documents, 100 by
        default, or ``invoke(query, k=...)`` per call.

        Example:
            >>> retriever = HybridRetriever()
            >>> _ = retriever.index([{"id": "d1", "text": "Qdrant fuses dense and sparse results."}])
            >>> retriever.as_langchain(k=5).invoke("fusion")[0].id
            'd1'
        """
        from rankbridge.integrations.langchain import RankbridgeHybridRetriever

        return RankbridgeHybridRetriever(hybrid=self, k=_one_count("k", k, limit), filter=filter, mode=mode)

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Release the store (and remove the temporary folder, if one was made)."""
        self._store.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> HybridRetriever:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self.path if self.path is not None else "server"
        return (
            f"HybridRetriever(store={type(self._store).__name__}, at={str(where)!r}, "
            f"collection={self.collection_name!r}, mode={self.mode!r}, fusion={self.fusion!r}, rrf_k={self.rrf_k})"
        )


# ---------------------------------------------------------------------- helpers


def _one_count(name: str, value: int | None, limit: int | None, default: int = 100) -> int:
    if value is not None and limit is not None and value != limit:
        raise ConfigError(f"{name}={value!r} and limit={limit!r} disagree; give one of them")
    count = value if value is not None else limit if limit is not None else default
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ConfigError(f"{name} must be a positive int, got {count!r}")
    return count


def _check_choice(name: str, value: Any, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")


def _as_document(index: int, item: Candidate | Mapping[str, Any]) -> Candidate:
    if isinstance(item, Candidate):
        doc_id, text, metadata = item.id, item.text, dict(item.metadata)
    elif isinstance(item, Mapping):
        doc_id = item.get("id", item.get("_id"))
        text = item.get("text")
        metadata = dict(item.get("metadata") or {})
        title = item.get("title")
        if title:
            metadata.setdefault("title", title)
            text = f"{title}\n{text}" if text else title
    else:
        raise TypeError(f"document {index} is a {type(item).__name__}; expected a Candidate or a mapping")
    if doc_id is None:
        raise ValueError(f"document {index} has no id; HybridRetriever needs one per document (it makes re-indexing idempotent)")
    if not isinstance(text, str) or not text:
        raise ValueError(f"document {index} (id {doc_id!r}) has no text")
    for key in ("doc_id", "text"):
        if key in metadata:
            raise ValueError(f"document {index} (id {doc_id!r}): metadata key {key!r} is reserved")
    return Candidate(text=text, id=doc_id, metadata=metadata)


def _candidate(hit: _Hit) -> Candidate:
    payload = dict(hit.payload or {})
    text = payload.pop("text", None)
    doc_id = payload.pop("doc_id", None)
    return Candidate(text=text, id=doc_id, metadata=payload, score=float(hit.score))


def _make_client(path: Path | None, url: str | None, api_key: str | None, timeout: float = 10.0):
    qdrant_client = require("qdrant_client", extra=_EXTRA, package="qdrant-client")
    if url:
        # No version probe at construction: it warns on stderr and waits on a silent port; the
        # first request (collection_exists) reaches the server and fails as one BackendError.
        try:
            return qdrant_client.QdrantClient(
                url=url, api_key=api_key, timeout=max(1, round(timeout)), check_compatibility=False
            )
        except Exception as exc:  # noqa: BLE001 - a malformed URL and the like
            raise ConfigError(f"cannot use Qdrant server url {url!r}: {type(exc).__name__}: {exc}") from None
    path.mkdir(parents=True, exist_ok=True)
    return qdrant_client.QdrantClient(path=str(path))


def _call(where: str, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """A qdrant-client request; a connection failure, timeout or server error becomes one
    `BackendError` naming the store, instead of a deep traceback from the HTTP stack."""
    try:
        return fn(*args, **kwargs)
    except (ConfigError, BackendError):
        raise
    except Exception as exc:  # noqa: BLE001 - qdrant-client raises httpx, grpc and its own errors
        detail = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise BackendError(f"{where}: {what} failed: {type(exc).__name__}: {detail}") from None


def _filter_items(filter: Mapping[str, Any]):
    if not filter:
        raise ConfigError("an empty filter mapping matches nothing useful; pass None for no filter")
    for key, value in filter.items():
        if isinstance(value, (list, tuple, set)):
            yield key, "any", list(value)
        elif isinstance(value, (str, int, bool)):
            yield key, "value", value
        else:
            raise ConfigError(
                f"filter field {key!r}: {type(value).__name__} values are not supported in a mapping filter "
                "(use str, int, bool or a list of them, or a qdrant_client.models.Filter)"
            )


class _ClientStore:
    """qdrant-client: local mode (`path=`) or a server (`url=`); the same calls either way."""

    def __init__(self, client: Any, collection: str, signature: dict[str, Any], where: str = "Qdrant"):
        from qdrant_client import models

        self.client = client
        self.models = models
        self.collection = collection
        self.where = where
        if self._call("checking the collection", client.collection_exists, collection):
            params = self._call("reading the collection", client.get_collection, collection).config.params
            size = params.vectors[DENSE].size if isinstance(params.vectors, dict) and DENSE in params.vectors else None
            if size != signature["dim"] or SPARSE not in (params.sparse_vectors or {}):
                raise ConfigError(
                    f"collection {collection!r} exists with a different layout (dense size {size}, "
                    f"expected {signature['dim']} and a {SPARSE!r} sparse vector); use another collection_name"
                )
        else:
            self._call(
                "creating the collection",
                client.create_collection,
                collection,
                vectors_config={DENSE: models.VectorParams(size=signature["dim"], distance=models.Distance.COSINE)},
                sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
            )

    def upsert(self, ids: list[str], dense: np.ndarray, sparse: list[SparseVector], payloads: list[dict]) -> None:
        m = self.models
        points = [
            m.PointStruct(
                id=pid,
                vector={DENSE: d.tolist(), SPARSE: m.SparseVector(indices=s.indices, values=s.values)},
                payload=p,
            )
            for pid, d, s, p in zip(ids, dense, sparse, payloads)
        ]
        self._call("upserting points", self.client.upsert, self.collection, points=points, wait=True)

    def finish(self) -> None:
        pass

    def count(self) -> int:
        return self._call("counting points", self.client.count, self.collection, exact=True).count

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return _call(self.where, what, fn, *args, **kwargs)

    def _filter(self, filter: Any):
        m = self.models
        if filter is None or isinstance(filter, m.Filter):
            return filter
        if isinstance(filter, Mapping):
            conditions = [
                m.FieldCondition(key=k, match=m.MatchAny(any=v) if kind == "any" else m.MatchValue(value=v))
                for k, kind, v in _filter_items(filter)
            ]
            return m.Filter(must=conditions)
        raise ConfigError(f"filter must be a mapping or a qdrant_client.models.Filter, not {type(filter).__name__}")

    def _request(self, r: _Request):
        m = self.models
        flt = self._filter(r.filter)
        dense = None if r.dense is None else m.Prefetch(query=r.dense, using=DENSE, limit=r.prefetch_limit)
        sparse = None
        if r.sparse is not None and r.sparse.indices:
            sparse = m.Prefetch(
                query=m.SparseVector(indices=r.sparse.indices, values=r.sparse.values), using=SPARSE, limit=r.prefetch_limit
            )
        if r.mode == "hybrid":
            fusion = m.RrfQuery(rrf=m.Rrf(k=r.rrf_k)) if r.fusion == "rrf" else m.FusionQuery(fusion=m.Fusion.DBSF)
            prefetch = [p for p in (dense, sparse) if p is not None]
            return m.QueryRequest(prefetch=prefetch, query=fusion, filter=flt, limit=r.limit, with_payload=True)
        single = dense if r.mode == "dense" else sparse
        if single is None:
            return None
        return m.QueryRequest(query=single.query, using=single.using, filter=flt, limit=r.limit, with_payload=True)

    def query(self, requests: list[_Request]) -> list[list[_Hit]]:
        native = [self._request(r) for r in requests]
        sent = [n for n in native if n is not None]
        responses = iter(
            self._call("searching", self.client.query_batch_points, self.collection, requests=sent) if sent else []
        )
        out = []
        for n in native:
            points = [] if n is None else next(responses).points
            out.append([_Hit(score=p.score, payload=p.payload) for p in points])
        return out

    def close(self) -> None:
        self.client.close()


class _EdgeStore:
    """qdrant-edge-py: Qdrant's engine in-process; one shard folder per collection."""

    def __init__(self, folder: Path, signature: dict[str, Any], search_threads: int | None = 1):
        qe = require("qdrant_edge", extra=_EXTRA, package="qdrant-edge-py")
        self.qe = qe
        self.folder = folder
        marker = folder.with_name(folder.name + ".rankbridge.json")
        config = qe.EdgeConfig(
            vectors={DENSE: qe.EdgeVectorParams(size=signature["dim"], distance=qe.Distance.Cosine)},
            sparse_vectors={SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
            max_search_threads=search_threads,
        )
        if marker.exists() and folder.exists():
            stored = json.loads(marker.read_text(encoding="utf-8"))
            if stored != signature:
                raise ConfigError(
                    f"the store at {folder} was built with other embedders ({stored}); this retriever uses "
                    f"{signature}. Use another path or collection_name, or delete the folder to re-index"
                )
            self.shard = qe.EdgeShard.load(str(folder), config)
        else:
            folder.mkdir(parents=True, exist_ok=True)
            self.shard = qe.EdgeShard.create(str(folder), config)
            marker.write_text(json.dumps(signature), encoding="utf-8")

    def upsert(self, ids: list[str], dense: np.ndarray, sparse: list[SparseVector], payloads: list[dict]) -> None:
        qe = self.qe
        points = [
            qe.Point(id=pid, vector={DENSE: d.tolist(), SPARSE: qe.SparseVector(s.indices, s.values)}, payload=p)
            for pid, d, s, p in zip(ids, dense, sparse, payloads)
        ]
        self.shard.update(qe.UpdateOperation.upsert_points(points))

    def finish(self) -> None:
        self.shard.optimize()
        self.shard.flush()

    def count(self) -> int:
        return self.shard.count(self.qe.CountRequest(exact=True))

    def _filter(self, filter: Any):
        qe = self.qe
        if filter is None or isinstance(filter, qe.Filter):
            return filter
        if isinstance(filter, Mapping):
            conditions = [
                qe.FieldCondition(k, match=qe.MatchAny(v) if kind == "any" else qe.MatchValue(v))
                for k, kind, v in _filter_items(filter)
            ]
            return qe.Filter(must=conditions)
        if type(filter).__module__.startswith("qdrant_client"):
            return _client_filter_to_edge(qe, filter)
        raise ConfigError(
            f"filter must be a mapping, a qdrant_client.models.Filter or a qdrant_edge.Filter, not {type(filter).__name__}"
        )

    def _request(self, r: _Request):
        qe = self.qe
        flt = self._filter(r.filter)
        dense = None if r.dense is None else qe.Query.Nearest(r.dense, using=DENSE)
        sparse = None
        if r.sparse is not None and r.sparse.indices:
            sparse = qe.Query.Nearest(qe.SparseVector(r.sparse.indices, r.sparse.values), using=SPARSE)
        if r.mode == "hybrid":
            fusion = qe.Fusion.Rrf(k=r.rrf_k) if r.fusion == "rrf" else qe.Fusion.Dbsf()
            prefetches = [
                qe.Prefetch(limit=r.prefetch_limit, query=q, filter=flt) for q in (dense, sparse) if q is not None
            ]
            return qe.QueryRequest(limit=r.limit, prefetches=prefetches, query=fusion, filter=flt, with_payload=True)
        single = dense if r.mode == "dense" else sparse
        if single is None:
            return None
        return qe.QueryRequest(limit=r.limit, query=single, filter=flt, with_payload=True)

    def query(self, requests: list[_Request]) -> list[list[_Hit]]:
        native = [self._request(r) for r in requests]
        sent = [n for n in native if n is not None]
        responses = iter(self.shard.query_batch(self.qe.QueryBatchRequest(sent)) if sent else [])
        out = []
        for n in native:
            points = [] if n is None else next(responses)
            out.append([_Hit(score=p.score, payload=p.payload) for p in points])
        return out

    def close(self) -> None:
        if self.shard is not None:
            self.shard.close()
            self.shard = None


def _client_filter_to_edge(qe: Any, flt: Any):
    """A `qdrant_client.models.Filter` written as a `qdrant_edge.Filter` (field matches, ranges,
    emptiness and nesting: the conditions a retrieval filter uses)."""
    from qdrant_client import models as m

    def condition(c: Any):
        if isinstance(c, m.Filter):
            return convert(c)
        if isinstance(c, m.IsEmptyCondition):
            return qe.IsEmptyCondition(c.is_empty.key)
        if isinstance(c, m.IsNullCondition):
            return qe.IsNullCondition(c.is_null.key)
        if isinstance(c, m.FieldCondition):
            match = None
            if isinstance(c.match, m.MatchValue):
                match = qe.MatchValue(c.match.value)
            elif isinstance(c.match, m.MatchAny):
                match = qe.MatchAny(list(c.match.any))
            elif isinstance(c.match, m.MatchExcept):
                match = qe.MatchExcept(list(c.match.except_))
            elif isinstance(c.match, m.MatchText):
                match = qe.MatchText(c.match.text)
            elif c.match is not None:
                raise ConfigError(f"filter match {type(c.match).__name__} is not supported by the embedded store")
            rng = None
            if isinstance(c.range, m.Range):
                rng = qe.RangeFloat(gte=c.range.gte, gt=c.range.gt, lte=c.range.lte, lt=c.range.lt)
            elif c.range is not None:
                raise ConfigError(f"filter range {type(c.range).__name__} is not supported by the embedded store")
            if match is None and rng is None:
                raise ConfigError(f"filter condition on {c.key!r} has neither match nor range (unsupported by the embedded store)")
            return qe.FieldCondition(c.key, match=match, range=rng)
        raise ConfigError(f"filter condition {type(c).__name__} is not supported by the embedded store")

    def convert(f: Any):
        def many(items):
            if items is None:
                return None
            return [condition(c) for c in (items if isinstance(items, list) else [items])]

        if getattr(f, "min_should", None) is not None:
            raise ConfigError("filter min_should is not supported by the embedded store")
        return qe.Filter(must=many(f.must), should=many(f.should), must_not=many(f.must_not))

    return convert(flt)


__all__ = ["HybridRetriever", "point_id"]
