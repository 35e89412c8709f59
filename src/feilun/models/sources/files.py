"""File facts shared by sources: streaming sha256 and atomic folder publication."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

_CHUNK_BYTES = 1 << 20


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def publish_folder(final: Path, write: Callable[[Path], None]) -> Path:
    """Fill a temporary sibling folder with `write`, then rename it to `final`.

    A crash mid-write leaves only a temporary folder, never a half-written `final`.
    """
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        write(staging)
        staging.rename(final)
    except OSError:
        if final.is_dir():  # another process published it first
            shutil.rmtree(staging, ignore_errors=True)
            return final
        shutil.rmtree(staging, ignore_errors=True)
        raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final
