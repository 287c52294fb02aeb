"""The one file-hash and atomic-write helpers in `rankbridge.rerankers.core.paths`."""

from __future__ import annotations

import hashlib
import stat

import pytest

from rankbridge.rerankers.core.paths import (
    atomic_file,
    atomic_folder,
    atomic_write_bytes,
    atomic_write_text,
    content_hash,
    file_hash,
)


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_file_hash_is_the_sha256_prefix_and_follows_the_bytes(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"x" * (3 << 20))  # several read chunks
    assert file_hash(path) == hashlib.sha256(b"x" * (3 << 20)).hexdigest()[:16]
    assert file_hash(path, length=24) == hashlib.sha256(b"x" * (3 << 20)).hexdigest()[:24]
    before = file_hash(path)
    path.write_bytes(b"y" + b"x" * ((3 << 20) - 1))
    assert file_hash(path) != before


def test_content_hash_sees_names_and_bytes(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "config.json").write_text("{}")
    (tmp_path / "model.bin").write_bytes(b"w")
    first = content_hash(tmp_path)
    assert len(first) == 16 and content_hash(tmp_path) == first
    (tmp_path / "model.bin").rename(tmp_path / "model2.bin")
    assert content_hash(tmp_path) != first


def test_atomic_file_replaces_the_target_and_leaves_nothing_else(tmp_path):
    target = tmp_path / "sub" / "model.onnx"
    with atomic_file(target) as part:
        assert part.parent == target.parent and part.suffix == ".onnx" and part != target
        part.write_bytes(b"new")
        assert not target.exists()  # nothing visible before the block ends
    assert target.read_bytes() == b"new" and _mode(target) == 0o644
    assert [p.name for p in target.parent.iterdir()] == ["model.onnx"]


def test_atomic_file_keeps_the_old_target_when_writing_fails(tmp_path):
    target = tmp_path / "cache.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_file(target) as part:
            part.write_text("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["cache.txt"]


def test_atomic_write_bytes_and_text(tmp_path):
    atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")
    atomic_write_text(tmp_path / "t.txt", "héllo")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "t.txt").read_bytes() == "héllo".encode()
    atomic_write_text(tmp_path / "t.txt", "again")
    assert (tmp_path / "t.txt").read_text() == "again"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.bin", "t.txt"]


def test_atomic_folder_renames_a_readable_folder_into_place(tmp_path):
    target = tmp_path / "converted"
    with atomic_folder(target) as staging:
        assert staging.parent == tmp_path and staging.name.startswith(".converted.")
        (staging / "nested").mkdir()
        (staging / "nested" / "tokenizer.json").write_text("{}")
        (staging / "config.json").write_text("{}")
        assert not target.exists()
    assert (target / "config.json").is_file() and (target / "nested" / "tokenizer.json").is_file()
    assert _mode(target) == 0o755 and _mode(target / "nested") == 0o755
    assert _mode(target / "config.json") == 0o644 and _mode(target / "nested" / "tokenizer.json") == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["converted"]


def test_atomic_folder_leaves_no_staging_folder_when_the_build_fails(tmp_path):
    with pytest.raises(ValueError, match="bad weights"):
        with atomic_folder(tmp_path / "converted") as staging:
            (staging / "model.safetensors").write_bytes(b"partial")
            raise ValueError("bad weights")
    assert list(tmp_path.iterdir()) == []


def test_atomic_folder_keeps_a_folder_another_process_finished(tmp_path):
    target = tmp_path / "converted"
    with pytest.raises(FileExistsError, match="another process"):
        with atomic_folder(target) as staging:
            (staging / "config.json").write_text("mine")
            target.mkdir()
            (target / "config.json").write_text("theirs")
    assert (target / "config.json").read_text() == "theirs"
    assert [p.name for p in tmp_path.iterdir()] == ["converted"]


@pytest.mark.parametrize("bad", ["../../x", "a/b", "a\\b", "..", ".hidden", "-flag", "", "x" * 256, None, 7])
def test_plain_name_refuses_anything_that_could_leave_its_folder(bad):
    from rankbridge.rerankers.core.errors import ConfigError
    from rankbridge.rerankers.core.paths import plain_name

    with pytest.raises(ConfigError, match="thing .* is not a plain name"):
        plain_name(bad, "thing")


def test_plain_name_accepts_ordinary_names():
    from rankbridge.rerankers.core.paths import plain_name

    assert [plain_name(n) for n in ("scifact", "run_2.v1", "A-b")] == ["scifact", "run_2.v1", "A-b"]
