"""Content-addressed artifact store: bytes are named by their digest `sha256:<hex>`.

Files live at `root/sha256/ab/cd/<hex>`, written to a temporary name beside their final one,
fsynced, then renamed, so a crash never leaves a half file under a digest. Reads verify the hash.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

from feilun.core.errors import ArtifactError

logger = logging.getLogger(__name__)

ALGORITHM = "sha256"
CHUNK_BYTES = 1 << 20
_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")
_TMP_PREFIX = ".tmp-"


@runtime_checkable
class ObjectStore(Protocol):
    """What stages need from an artifact store; a local folder now, S3-compatible later."""

    def put_file(self, path: Path) -> str:
        """Store a file's bytes; their digest `sha256:<hex>`."""
        ...

    def open(self, digest: str) -> BinaryIO:
        """Open a binary reader over the verified bytes of `digest`."""
        ...

    def exists(self, digest: str) -> bool:
        """Whether `digest` is stored."""
        ...


def parse_digest(digest: str) -> str:
    """Return the hex part of `sha256:<64 lowercase hex>`; ArtifactError for anything else."""
    match = _DIGEST.fullmatch(digest) if isinstance(digest, str) else None
    if match is None:
        raise ArtifactError(
            f"{digest!r} is not an artifact digest",
            "expected 'sha256:' followed by 64 lowercase hex digits, as put_bytes returns",
        )
    return match.group(1)


def hash_chunks(chunks: Iterable[bytes]) -> str:
    """Return the digest `sha256:<hex>` of a stream of bytes."""
    hasher = hashlib.sha256()
    for chunk in chunks:
        hasher.update(chunk)
    return f"{ALGORITHM}:{hasher.hexdigest()}"


def _read_chunks(stream: BinaryIO) -> Iterable[bytes]:
    while chunk := stream.read(CHUNK_BYTES):
        yield chunk


class ArtifactStore:
    """A local folder of immutable, content-addressed files."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, digest: str) -> Path:
        """Return where `digest` is (or would be) stored."""
        hex_digest = parse_digest(digest)
        return self.root / ALGORITHM / hex_digest[:2] / hex_digest[2:4] / hex_digest

    def exists(self, digest: str) -> bool:
        """Tell whether `digest` is stored (its content is checked on read, not here)."""
        return self.path(digest).is_file()

    def put_bytes(self, data: bytes) -> str:
        """Store `data` and return its digest; storing the same bytes again is a no-op."""
        digest = hash_chunks([data])
        self._write(digest, [data])
        return digest

    def put_file(self, path: Path) -> str:
        """Store a file's bytes, streamed in chunks, and return their digest."""
        with _open_source(path) as source:
            digest = hash_chunks(_read_chunks(source))
        with _open_source(path) as source:
            self._write(digest, _read_chunks(source), source_path=path)
        return digest

    def open(self, digest: str) -> BinaryIO:
        """Open a binary reader over the bytes of `digest`, verified before it is returned."""
        path = self.path(digest)
        try:
            stream: BinaryIO = path.open("rb")
        except FileNotFoundError as e:
            raise ArtifactError(
                f"artifact {digest} is missing: no file at {path}",
                "re-create the artifact (re-run the step that made it) or check artifact_root",
            ) from e
        try:
            actual = hash_chunks(_read_chunks(stream))
            if actual != digest:
                raise ArtifactError(
                    f"artifact {digest} at {path} is corrupt: its content hashes to {actual}",
                    "re-create the artifact (re-run the step that made it); "
                    "storing the same bytes again replaces the bad file",
                )
            stream.seek(0)
        except BaseException:
            stream.close()
            raise
        return stream

    def read_bytes(self, digest: str) -> bytes:
        """Return the verified bytes of `digest`."""
        with self.open(digest) as stream:
            return stream.read()

    def _is_intact(self, digest: str) -> bool:
        try:
            self.open(digest).close()
        except ArtifactError:
            return False
        return True

    def _write(self, digest: str, chunks: Iterable[bytes], source_path: Path | None = None) -> None:
        final = self.path(digest)
        if final.is_file():
            if self._is_intact(digest):
                return
            logger.warning("replacing corrupt artifact file %s", final)
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=final.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                written = hash_chunks(_tee(chunks, out))
                out.flush()
                os.fsync(out.fileno())
            if written != digest:
                raise ArtifactError(
                    f"{source_path} changed while it was being stored (read as {digest}, "
                    f"then as {written})",
                    "store it again once nothing is writing to it",
                )
            tmp.chmod(0o444)  # content-addressed files never change
            os.replace(tmp, final)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        _fsync_dir(final.parent)
        logger.debug("stored artifact %s at %s", digest, final)


def _tee(chunks: Iterable[bytes], out: BinaryIO) -> Iterable[bytes]:
    for chunk in chunks:
        out.write(chunk)
        yield chunk


def _open_source(path: Path) -> BinaryIO:
    try:
        return Path(path).open("rb")
    except OSError as e:
        raise ArtifactError(
            f"cannot read {path} to store it: {e.strerror}", "check the path"
        ) from e


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable on POSIX; directories cannot be opened on Windows.
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
