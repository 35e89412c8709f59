from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from feilun.core.errors import ArtifactError
from feilun.store import artifacts
from feilun.store.artifacts import ArtifactStore, ObjectStore, parse_digest

DATA = "数据飞轮 artifact\n".encode() * 100


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts")


def test_is_an_object_store(store: ArtifactStore) -> None:
    assert isinstance(store, ObjectStore)


def test_put_bytes_round_trip_and_layout(store: ArtifactStore) -> None:
    digest = store.put_bytes(DATA)
    hex_digest = hashlib.sha256(DATA).hexdigest()
    assert digest == f"sha256:{hex_digest}"
    expected = store.root / "sha256" / hex_digest[:2] / hex_digest[2:4] / hex_digest
    assert store.path(digest) == expected
    assert _files(store.root) == [expected]
    assert store.exists(digest)
    assert store.read_bytes(digest) == DATA
    with store.open(digest) as stream:
        assert stream.read() == DATA
    assert not stat.S_IMODE(expected.stat().st_mode) & 0o222  # stored read-only


def test_put_file_streams_in_chunks(
    store: ArtifactStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(artifacts, "CHUNK_BYTES", 7)
    source = tmp_path / "weights.bin"
    source.write_bytes(DATA)
    digest = store.put_file(source)
    assert digest == "sha256:" + hashlib.sha256(DATA).hexdigest()
    assert store.read_bytes(digest) == DATA
    assert store.put_bytes(DATA) == digest


def test_empty_bytes(store: ArtifactStore) -> None:
    digest = store.put_bytes(b"")
    assert digest == "sha256:" + hashlib.sha256(b"").hexdigest()
    assert store.read_bytes(digest) == b""


def test_put_is_idempotent(store: ArtifactStore) -> None:
    digest = store.put_bytes(DATA)
    before = store.path(digest).stat()
    assert store.put_bytes(DATA) == digest
    after = store.path(digest).stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert len(_files(store.root)) == 1


def _flip_a_byte(path: Path) -> None:
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_corruption_is_detected_on_read(store: ArtifactStore) -> None:
    digest = store.put_bytes(DATA)
    _flip_a_byte(store.path(digest))
    with pytest.raises(ArtifactError, match="is corrupt") as info:
        store.read_bytes(digest)
    assert digest in str(info.value)
    assert str(store.path(digest)) in str(info.value)
    assert "re-create the artifact" in str(info.value)
    with pytest.raises(ArtifactError, match="is corrupt"):
        store.open(digest)
    assert store.put_bytes(DATA) == digest  # storing the bytes again repairs it
    assert store.read_bytes(digest) == DATA


def test_missing_digest(store: ArtifactStore) -> None:
    digest = "sha256:" + hashlib.sha256(b"never stored").hexdigest()
    assert not store.exists(digest)
    with pytest.raises(ArtifactError, match="is missing") as info:
        store.read_bytes(digest)
    assert digest in str(info.value)
    assert str(store.path(digest)) in str(info.value)


@pytest.mark.parametrize(
    "digest",
    [
        "",
        "sha256:",
        "abc",
        hashlib.sha256(b"x").hexdigest(),
        "md5:" + hashlib.md5(b"x").hexdigest(),
        "sha256:" + hashlib.sha256(b"x").hexdigest().upper(),
        "sha256:" + hashlib.sha256(b"x").hexdigest()[:-1],
        "sha256:" + hashlib.sha256(b"x").hexdigest() + "\n",
        "sha256:../../../../etc/passwd",
    ],
)
def test_malformed_digest_is_rejected(store: ArtifactStore, digest: str) -> None:
    for call in (store.path, store.exists, store.read_bytes, store.open, parse_digest):
        with pytest.raises(ArtifactError, match="is not an artifact digest") as info:
            call(digest)
        assert "64 lowercase hex" in str(info.value)


@pytest.mark.parametrize("failing", ["replace", "fsync"])
def test_failed_write_leaves_no_file_behind(
    store: ArtifactStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    def fail(*args: object) -> None:
        raise OSError("simulated crash")

    monkeypatch.setattr(os, failing, fail)
    source = tmp_path / "big.bin"
    source.write_bytes(DATA)
    with pytest.raises(OSError, match="simulated crash"):
        store.put_bytes(DATA)
    with pytest.raises(OSError, match="simulated crash"):
        store.put_file(source)
    assert _files(store.root) == []
    monkeypatch.undo()
    digest = store.put_file(source)
    assert store.read_bytes(digest) == DATA
    assert _files(store.root) == [store.path(digest)]


def test_put_file_of_missing_source(store: ArtifactStore, tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="cannot read"):
        store.put_file(tmp_path / "absent.bin")
