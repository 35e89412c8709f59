"""Replacing a file so that a crash leaves the old content or the new, never a torn file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, data: bytes | str, mode: int | None = None) -> None:
    """Replace `path` with `data`: a temporary file beside it, synced to disk, renamed over it.

    Text is written as UTF-8. The new file keeps the old one's permissions (0o644 for a new
    file) unless `mode` is given; the folder is created when missing.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode is None:
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
