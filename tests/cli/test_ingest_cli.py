"""`feilun data ingest` and `feilun data quarantine` on a real workspace."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from feilun.cli.main import app
from feilun.core.errors import ConfigError

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
DOCUMENTS = SHARED / "documents"
FEILUN = str(Path(sys.executable).with_name("feilun"))


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One `feilun init` per module; each test gets a copy of the workspace."""
    from feilun.app.workspace import init_workspace
    from feilun.models.registry import ModelRegistry

    path = tmp_path_factory.mktemp("template") / "ws"
    with pytest.MonkeyPatch.context() as patch:
        # Registering the packaged chat model hashes ~100 MB of weights; ingest never uses it.
        patch.setattr(ModelRegistry, "ensure_packaged", lambda self: [])
        workspace, _ = init_workspace(path, {})
    workspace.close()
    return path


@pytest.fixture
def env(template: Path, tmp_path: Path) -> dict[str, str]:
    shutil.copytree(template, tmp_path / "ws")
    return {"FEILUN_WORKSPACE": str(tmp_path / "ws")}


@pytest.fixture
def batch(tmp_path: Path) -> Path:
    folder = tmp_path / "batch"
    folder.mkdir()
    shutil.copy(DOCUMENTS / "zh" / "shanghai-smoking-control-regulation.md", folder / "good.md")
    (folder / "empty.txt").write_bytes(b"")
    (folder / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    return folder


def invoke(env: dict[str, str], *args: str) -> tuple[int, str]:
    wide = {**env, "COLUMNS": "400"}  # table cells on one line each
    result = CliRunner().invoke(app, list(args), env=wide, catch_exceptions=False)
    return result.exit_code, result.stdout


def test_ingest_shows_a_summary_and_reingest_skips(env: dict[str, str]) -> None:
    code, output = invoke(env, "data", "ingest", str(DOCUMENTS), "-c", "docs", "--recursive")
    assert code == 0, output
    assert "ingest into docs" in output
    assert _row(output, "ingested") == "14" and _row(output, "quarantined") == "0"
    code, output = invoke(env, "data", "ingest", str(DOCUMENTS), "-c", "docs", "-r")
    assert code == 0
    assert _row(output, "skipped (unchanged)") == "14" and _row(output, "ingested") == "0"


def test_quarantined_files_are_listed_with_reason_and_fix(env: dict[str, str], batch: Path) -> None:
    code, output = invoke(env, "data", "ingest", str(batch), "-c", "inbox")
    assert code == 0, output  # a bad file never fails the batch without --strict
    assert _row(output, "ingested") == "1" and _row(output, "quarantined") == "2"
    assert "empty (0 bytes)" in output and "PNG image" in output
    assert "OCR" in output  # the fix for an image is shown

    code, output = invoke(env, "data", "ingest", str(batch), "-c", "inbox", "--strict")
    assert code == 1

    code, output = invoke(env, "data", "ingest", str(batch), "-c", "inbox", "--json")
    report = json.loads(output)
    assert report["counts"] == {"ingested": 0, "skipped": 1, "quarantined": 2}
    files = {f["path"]: f for f in report["files"]}
    assert files["batch/photo.png"]["status"] == "quarantined"
    assert files["batch/photo.png"]["fix"]
    assert files["batch/good.md"]["record"] == "inbox/batch/good.md@1"

    code, output = invoke(env, "data", "quarantine", "--json")
    listed = json.loads(output)
    assert sorted(q["name"] for q in listed) == ["inbox/batch/empty.txt", "inbox/batch/photo.png"]
    assert all(q["reason"] and q["fix"] and q["collection"] == "inbox" for q in listed)
    code, output = invoke(env, "data", "quarantine", "-c", "inbox")
    assert code == 0 and "inbox/batch/photo.png" in output
    code, output = invoke(env, "data", "quarantine", "-c", "other", "--json")
    assert json.loads(output) == []


def test_a_missing_path_is_a_clear_error(env: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        invoke(env, "data", "ingest", str(tmp_path / "nope"), "-c", "c")


def test_console_script_strict_exit_code_and_progress(env: dict[str, str], batch: Path) -> None:
    # The real entry point: workers are spawned from the `feilun` script, progress goes to stderr.
    run = subprocess.run(
        [FEILUN, "data", "ingest", str(batch), "-c", "c", "--strict", "--max-seconds", "30"],
        env={**os.environ, **env, "COLUMNS": "400"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1, run.stderr
    assert _row(run.stdout, "ingested") == "1" and _row(run.stdout, "quarantined") == "2"
    assert "Traceback" not in run.stderr
    run = subprocess.run(
        [FEILUN, "data", "ingest", str(batch / "nope"), "-c", "c"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1
    assert run.stderr.count("\n") == 1 and "does not exist" in run.stderr


def _row(table: str, label: str) -> str:
    """The value in the row of a Rich table whose first cell is `label`."""
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip("│┃ ").split("│")]
        if cells and cells[0] == label:
            return cells[1]
    raise AssertionError(f"no row {label!r} in:\n{table}")
