"""write_atomically: whole new content, kept permissions, and the old file intact on failure."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from feilun.core.files import write_atomically


def test_replaces_content_keeps_permissions_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "report.html"
    write_atomically(path, "新的 text")
    assert path.read_text(encoding="utf-8") == "新的 text"
    assert path.stat().st_mode & 0o777 == 0o644  # readable by others, unlike mkstemp's 0o600
    os.chmod(path, 0o600)
    write_atomically(path, b"\x00bytes")
    assert path.read_bytes() == b"\x00bytes" and path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["report.html"]


def test_a_failed_write_leaves_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_text("old", encoding="utf-8")
    with pytest.raises(TypeError):
        write_atomically(path, 42)  # type: ignore[arg-type]
    assert path.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["settings.toml"]
