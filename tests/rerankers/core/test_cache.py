"""The score cache (`cache: memory | disk`): hits skip the model, anything that changes a score misses,
the disk store survives processes and concurrent writers."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from PIL import Image

from rankbridge.rerankers import Candidate, ConfigError, load_reranker
from rankbridge.rerankers.core.cache import DB_NAME, MemoryStore, ScoreCache, SqliteStore, image_digest

ROOT = Path(__file__).resolve().parents[3]

QUERY = "what is the capital of france"
DOCS = [
    "Paris is the capital and largest city of France.",
    "Bananas are a yellow fruit.",
    "Lyon is a city in France.",
    "The Eiffel Tower stands in Paris.",
]


@pytest.fixture
def cache_root(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("RANKBRIDGE_CACHE_DIR", str(root))
    return root


@pytest.fixture(scope="module")
def weak_model(model_dir) -> str:
    return str(model_dir / "minilm-l6-ce-weak")


def count_forward(reranker) -> list[int]:
    """Wrap the cross-encoder's real forward pass to count the pairs it computes."""
    seen: list[int] = []
    forward = reranker._forward

    def counting(feeds):
        seen.append(len(feeds["input_ids"]))
        return forward(feeds)

    reranker._forward = counting
    return seen


def record_batches(reranker) -> list[list[list[str]]]:
    """Record the candidate texts each `_score_batch` call receives (the real method still runs)."""
    calls: list[list[list[str]]] = []
    score_batch = reranker._score_batch

    def recording(queries, candidate_lists):
        calls.append([[c.text for c in cands] for cands in candidate_lists])
        return score_batch(queries, candidate_lists)

    reranker._score_batch = recording
    return calls


# ---------------------------------------------------------------------- hits


def test_a_hit_returns_the_identical_result_and_skips_the_model(weak_model, cache_root):
    reranker = load_reranker({"backend": "cross-encoder", "model": weak_model, "cache": "memory"})
    pairs = count_forward(reranker)
    first = reranker.rank(QUERY, DOCS)
    assert sum(pairs) == len(DOCS)
    again = reranker.rank(QUERY, DOCS)
    assert sum(pairs) == len(DOCS), "the second call must not run the model"
    assert again == first
    assert again.scores == first.scores and again.relevances == first.relevances
    stats = reranker.cache_stats()
    assert (stats.hits, stats.misses) == (len(DOCS), len(DOCS))
    assert stats.hit_rate == 0.5


def test_a_partial_hit_scores_only_the_misses_grouped_per_query(weak_model, cache_root):
    cached = load_reranker({"backend": "cross-encoder", "model": weak_model, "cache": "memory"})
    plain = load_reranker({"backend": "cross-encoder", "model": weak_model})
    cached.rank(QUERY, DOCS[:2])
    calls = record_batches(cached)
    other = "where is the eiffel tower"
    ranked = cached.rank_many([QUERY, other], [[DOCS[2], DOCS[0], DOCS[1]], [DOCS[3], DOCS[0]]])
    # One call for both queries; only the candidates never scored for that query.
    assert calls == [[[DOCS[2]], [DOCS[3], DOCS[0]]]]
    expected = plain.rank_many([QUERY, other], [[DOCS[2], DOCS[0], DOCS[1]], [DOCS[3], DOCS[0]]])
    for got, want in zip(ranked, expected):
        assert got.indices == want.indices
        assert got.scores == pytest.approx(want.scores, abs=1e-5)


def test_duplicates_in_one_list_are_scored_once_and_stay_distinct(weak_model, cache_root):
    reranker = load_reranker({"backend": "cross-encoder", "model": weak_model, "cache": "memory"})
    calls = record_batches(reranker)
    ranked = reranker.rank(QUERY, [DOCS[1], DOCS[0], DOCS[1]])
    assert calls == [[[DOCS[1], DOCS[0]]]]
    assert sorted(ranked.indices) == [0, 1, 2]
    by_index = {r.index: r.score for r in ranked}
    assert by_index[0] == by_index[2]


def test_async_rank_uses_the_cache(weak_model, cache_root):
    reranker = load_reranker({"backend": "cross-encoder", "model": weak_model, "cache": "memory"})
    pairs = count_forward(reranker)
    first = asyncio.run(reranker.arank(QUERY, DOCS))
    second = asyncio.run(reranker.arank(QUERY, DOCS))
    assert second == first and sum(pairs) == len(DOCS)
    assert reranker.rank(QUERY, DOCS) == first and sum(pairs) == len(DOCS)


# ---------------------------------------------------------------------- misses


def test_a_changed_text_misses(weak_model, cache_root):
    reranker = load_reranker({"backend": "cross-encoder", "model": weak_model, "cache": "memory"})
    reranker.rank(QUERY, DOCS)
    calls = record_batches(reranker)
    changed = [*DOCS[:3], DOCS[3] + " It was built in 1889."]
    ranked = reranker.rank(QUERY, changed)
    assert calls == [[[changed[3]]]]
    fresh = load_reranker({"backend": "cross-encoder", "model": weak_model}).rank(QUERY, changed)
    assert {r.index: r.score for r in ranked}[3] == pytest.approx({r.index: r.score for r in fresh}[3], abs=1e-5)


def test_a_changed_model_file_misses(weak_model, cache_root, tmp_path):
    safetensors = pytest.importorskip("safetensors.torch")
    model = tmp_path / "model"
    shutil.copytree(weak_model, model)
    before = load_reranker({"backend": "cross-encoder", "model": str(model), "cache": "disk"})
    old = before.rank(QUERY, DOCS)
    weights = safetensors.load_file(model / "model.safetensors")
    bias = next(k for k in weights if k.startswith("classifier") and k.endswith("bias"))
    weights[bias] = weights[bias] + 1.0  # every logit moves up by exactly 1
    safetensors.save_file(weights, model / "model.safetensors", metadata={"format": "pt"})
    after = load_reranker({"backend": "cross-encoder", "model": str(model), "cache": "disk"})
    assert after.model_fingerprint() != before.model_fingerprint()
    new = after.rank(QUERY, DOCS)
    assert after.cache_stats().hits == 0 and after.cache_stats().misses == len(DOCS)
    assert new.indices == old.indices
    assert new.scores == pytest.approx([s + 1.0 for s in old.scores], abs=1e-4)


def test_a_changed_score_field_misses_and_other_fields_hit(weak_model, cache_root):
    spec = {"backend": "cross-encoder", "model": weak_model, "cache": "disk"}
    load_reranker(spec).rank(QUERY, DOCS)
    same = load_reranker({**spec, "on_error": "fallback", "fuse_first_stage": None, "cache_size": 7})
    same.rank(QUERY, DOCS)
    assert (same.cache_stats().hits, same.cache_stats().misses) == (len(DOCS), 0)
    shorter = load_reranker({**spec, "max_length": 16})
    shorter_ranked = shorter.rank(QUERY, DOCS)
    assert (shorter.cache_stats().hits, shorter.cache_stats().misses) == (0, len(DOCS))
    fresh = load_reranker({"backend": "cross-encoder", "model": weak_model, "max_length": 16}).rank(QUERY, DOCS)
    assert shorter_ranked.scores == pytest.approx(fresh.scores, abs=1e-5)


def test_a_field_changed_in_place_misses(cache_root):
    reranker = load_reranker({"backend": "lexical", "cache": "memory"})
    texts = ["capital of france paris", "france", "bananas"]
    before = reranker.rank("capital of france", texts)
    reranker.config.k1 = 0.3
    after = reranker.rank("capital of france", texts)
    assert reranker.cache_stats().hits == 0
    assert after.scores == load_reranker({"backend": "lexical", "k1": 0.3}).rank("capital of france", texts).scores
    assert after.scores != before.scores


def test_list_scored_backends_cache_whole_lists(cache_root):
    """BM25 computes IDF over the candidate list: one changed candidate changes every score."""
    reranker = load_reranker({"backend": "lexical", "cache": "memory"})
    plain = load_reranker("lexical")
    texts = ["capital of france paris", "france", "bananas"]
    reranker.rank("capital of france", texts)
    changed = [*texts[:2], "france france"]
    ranked = reranker.rank("capital of france", changed)
    assert reranker.cache_stats().hits == 0
    assert ranked == plain.rank("capital of france", changed)
    assert reranker.rank("capital of france", changed) == ranked
    assert reranker.cache_stats().hits == 3


def test_images_are_keyed_by_content(cache_root, tmp_path):
    page = Image.new("RGB", (8, 8), "white")
    other = page.copy()
    other.putpixel((3, 3), (0, 0, 0))
    page.save(tmp_path / "page.png")
    assert image_digest(page) == image_digest(page.copy())
    assert image_digest(page) != image_digest(other)
    png = (tmp_path / "page.png").read_bytes()
    assert image_digest(png) == image_digest(tmp_path / "page.png") == image_digest(str(tmp_path / "page.png"))
    assert image_digest("https://example.com/page.png") is None  # content unknown: never cached

    reranker = load_reranker({"backend": "identity", "cache": "memory"})
    pages = [Candidate(image=page, score=1.0), Candidate(image=other, score=2.0)]
    first = reranker.rank("q", pages)
    assert reranker.rank("q", [Candidate(image=page.copy(), score=1.0), Candidate(image=other.copy(), score=2.0)]) == first
    assert reranker.cache_stats().hits == 2
    changed = other.copy()
    changed.putpixel((4, 4), (0, 0, 0))
    reranker.rank("q", [Candidate(image=page, score=1.0), Candidate(image=changed, score=2.0)])
    assert reranker.cache_stats().misses == 4


# ---------------------------------------------------------------------- memory store


def test_memory_cache_is_a_bounded_lru(weak_model, cache_root):
    reranker = load_reranker({"backend": "cross-encoder", "model": weak_model, "cache": "memory", "cache_size": 2})
    for doc in DOCS[:3]:
        reranker.rank(QUERY, [doc])
    reranker.rank(QUERY, [DOCS[1]])  # still held: a hit, and now the most recent
    assert reranker.cache_stats().hits == 1
    reranker.rank(QUERY, [DOCS[0]])  # evicted first
    assert reranker.cache_stats().hits == 1
    store = MemoryStore(2)
    store.put_many({b"a": ((1.0,), (0.5,)), b"b": ((2.0,), (0.6,))})
    store.get_many([b"a"])
    store.put_many({b"c": ((3.0,), (0.7,))})
    assert set(store.get_many([b"a", b"b", b"c"])) == {b"a", b"c"}


def test_memory_cache_is_thread_safe(cache_root):
    reranker = load_reranker({"backend": "lexical", "cache": "memory", "cache_size": 50})
    errors: list[BaseException] = []
    lists = [[f"france {i}", f"capital {i % 7}", "bananas"] for i in range(40)]

    def work():
        try:
            for texts in lists:
                reranker.rank("capital of france", texts)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    stats = reranker.cache_stats()
    assert stats.hits + stats.misses == 4 * 40 * 3
    assert len(reranker._score_cache().store) <= 50


# ---------------------------------------------------------------------- disk store

_CHILD = textwrap.dedent(
    """
    import json, sys
    from rankbridge.rerankers import load_reranker
    spec, queries, texts = json.loads(sys.argv[1])
    reranker = load_reranker(spec)
    calls = []
    if hasattr(reranker, "_forward"):
        forward = reranker._forward
        reranker._forward = lambda feeds: (calls.append(len(feeds["input_ids"])), forward(feeds))[1]
    results = [reranker.rank(q, texts) for q in queries]
    stats = reranker.cache_stats()
    print(json.dumps({"scores": [r.scores for r in results], "hits": stats.hits, "misses": stats.misses, "pairs": sum(calls)}))
    """
)


def run_child(spec, queries, texts, cache_root) -> subprocess.Popen:
    env = {**os.environ, "RANKBRIDGE_CACHE_DIR": str(cache_root)}
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, json.dumps([spec, queries, texts])],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def finish(process: subprocess.Popen) -> dict:
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-2000:]
    return json.loads(out.strip().splitlines()[-1])


def test_the_disk_cache_survives_a_new_process(weak_model, cache_root):
    spec = {"backend": "cross-encoder", "model": weak_model, "cache": "disk"}
    first = finish(run_child(spec, [QUERY], DOCS, cache_root))
    assert (first["hits"], first["misses"], first["pairs"]) == (0, len(DOCS), len(DOCS))
    assert (cache_root / "scores" / DB_NAME).is_file()
    second = finish(run_child(spec, [QUERY], DOCS, cache_root))
    assert (second["hits"], second["misses"], second["pairs"]) == (len(DOCS), 0, 0)
    assert second["scores"] == first["scores"]


def test_two_processes_writing_at_once_lose_nothing(cache_root):
    spec = {"backend": "lexical", "cache": "disk"}
    texts = ["capital of france paris", "france", "bananas", "lyon is in france"]
    batches = [[f"capital of france {p}-{i}" for i in range(150)] for p in range(2)]
    children = [run_child(spec, queries, texts, cache_root) for queries in batches]
    results = [finish(child) for child in children]
    assert [r["misses"] for r in results] == [150 * len(texts)] * 2
    reader = load_reranker(spec)
    plain = load_reranker("lexical")
    for queries, result in zip(batches, results):
        for query, scores in zip(queries, result["scores"]):
            assert reader.rank(query, texts).scores == scores == plain.rank(query, texts).scores
    assert reader.cache_stats().misses == 0 and reader.cache_stats().hits == 300 * len(texts)


def test_opening_waits_out_another_process_holding_a_new_database(tmp_path, monkeypatch):
    # Two processes opening a new cache at once: SQLite refuses the WAL switch / table creation at
    # once with "database is locked" (no busy handler there). CI met it; opening must wait and retry.
    import sqlite3

    real = SqliteStore._connect
    refusals = []

    def locked_twice(self):
        if len(refusals) < 2:
            refusals.append(1)
            raise sqlite3.OperationalError("database is locked")
        return real(self)

    monkeypatch.setattr(SqliteStore, "_connect", locked_twice)
    store = SqliteStore(tmp_path / "scores.sqlite3")
    store.put_many({b"k": ((1.0,), (0.5,))})
    assert len(refusals) == 2 and store.get_many([b"k"]) == {b"k": ((1.0,), (0.5,))}
    store.close()
    refusals.clear()
    monkeypatch.setattr(SqliteStore, "_connect", lambda self: (_ for _ in ()).throw(sqlite3.OperationalError("database is locked")))
    with pytest.raises(ConfigError, match="database is locked"):
        SqliteStore(tmp_path / "held.sqlite3", timeout_s=0.05)  # held past the timeout: a clear error


def test_a_damaged_disk_cache_is_set_aside(cache_root, caplog):
    folder = cache_root / "scores"
    folder.mkdir(parents=True)
    (folder / DB_NAME).write_bytes(b"this is not a sqlite database" * 100)
    reranker = load_reranker({"backend": "lexical", "cache": "disk"})
    texts = ["capital of france", "bananas"]
    assert reranker.rank("capital of france", texts) == load_reranker("lexical").rank("capital of france", texts)
    assert any(p.name.startswith(f"{DB_NAME}.damaged-") for p in folder.iterdir())
    assert "unreadable" in caplog.text


def test_sqlite_store_round_trips_floats_exactly(tmp_path):
    store = SqliteStore(tmp_path / "s.sqlite3")
    values = {b"k1": ((0.1 + 0.2, -1e-300), (0.3, 1.0)), b"k2": ((12345.678901234567,), (0.000001,))}
    store.put_many(values)
    assert store.get_many([b"k1", b"k2", b"missing"]) == values
    assert len(store) == 2
    store.close()


def test_cache_none_builds_no_cache():
    reranker = load_reranker("lexical")
    assert reranker.cache_stats() is None


def test_score_cache_rejects_a_backend_that_returns_too_few(cache_root):
    from rankbridge.rerankers.core.base import Scores
    from rankbridge.rerankers.core.errors import BackendError

    cache = ScoreCache(lambda: {"backend": "t"}, MemoryStore(10), pointwise=True, name="t")
    with pytest.raises(BackendError, match="returned 1 scores"):
        cache.score_batch(["q"], [[Candidate(text="a"), Candidate(text="b")]], lambda qs, ls: [Scores([1.0], [0.5])])
    assert len(cache.store) == 0


def test_the_disk_store_stays_bounded(tmp_path):
    store = SqliteStore(tmp_path / "s.sqlite3", max_entries=100)
    for start in range(0, 300, 10):
        store.put_many({f"k{i}".encode(): ((float(i),), (0.5,)) for i in range(start, start + 10)})
    assert 90 <= len(store) <= 100
    assert store.get_many([b"k299"]) and not store.get_many([b"k0"])  # the oldest went first
    store.close()


def test_an_unusable_cache_folder_is_a_clear_config_error(tmp_path, monkeypatch):
    from rankbridge.rerankers import ConfigError

    folder = tmp_path / "cache" / "scores" / DB_NAME
    folder.mkdir(parents=True)  # a folder where the database file should be: sqlite cannot open it
    monkeypatch.setenv("RANKBRIDGE_CACHE_DIR", str(tmp_path / "cache"))
    reranker = load_reranker({"backend": "lexical", "cache": "disk", "on_error": "fallback"})
    with pytest.raises(ConfigError, match="cannot use the score cache"):
        reranker.rank("capital of france", ["france", "bananas"])
