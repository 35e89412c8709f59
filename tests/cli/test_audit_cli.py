"""`feilun audit list|export|verify|checkpoint` on a fresh workspace."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from feilun.cli.main import app


@pytest.fixture
def workspace(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    from feilun.app.workspace import init_workspace
    from feilun.models.registry import ModelRegistry

    # Registering the packaged SmolLM2 takes ~10 s and is not what these tests are about.
    monkeypatch.setattr(ModelRegistry, "ensure_packaged", lambda self: [])
    ws, _ = init_workspace(Path(env["FEILUN_WORKSPACE"]), env)
    ws.close()
    return env


def run(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)


def test_changes_are_listed_exported_and_verified(
    workspace: dict[str, str], tmp_path: Path
) -> None:
    assert run(workspace, "tenants", "create", "acme").exit_code == 0
    assert run(workspace, "quotas", "set", "-t", "acme", "--tokens-per-day", "500").exit_code == 0
    listed = json.loads(run(workspace, "audit", "list", "--json").stdout)["data"]
    assert [e["action"] for e in listed] == ["quota.set", "tenant.created"]
    only = run(workspace, "audit", "list", "--action", "tenant.created", "--since", "1d")
    assert "tenant.created" in only.stdout and "quota.set" not in only.stdout
    out = tmp_path / "audit.jsonl"
    assert run(workspace, "audit", "export", "--out", str(out)).exit_code == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["event"]["action"] for line in lines] == [
        "tenant.created",
        "quota.set",
        "audit.exported",
    ]
    assert "checkpoint at event 3" in run(workspace, "audit", "checkpoint").stdout
    verified = run(workspace, "audit", "verify")
    assert verified.exit_code == 0
    assert "intact: 3 events, 1 signed checkpoints" in verified.stdout


def test_verify_names_the_first_tampered_event(workspace: dict[str, str]) -> None:
    for name in ("a", "b", "c"):
        assert run(workspace, "tenants", "create", name).exit_code == 0
    with sqlite3.connect(Path(workspace["FEILUN_WORKSPACE"]) / "feilun.db") as db:
        db.execute("UPDATE audit_events SET target = 'z' WHERE seq = 2")
    result = run(workspace, "audit", "verify", "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert (report["valid"], report["first_bad_seq"], report["events_checked"]) == (False, 2, 1)
    assert "TAMPERED at event 2" in run(workspace, "audit", "verify").stderr


def test_an_empty_log_verifies(workspace: dict[str, str]) -> None:
    result = run(workspace, "audit", "verify")
    assert result.exit_code == 0 and "0 events" in result.stdout


def test_ingest_and_export_are_audited(workspace: dict[str, str], tmp_path: Path) -> None:
    from feilun.app.workspace import opened
    from feilun.data.datasets import save_dataset

    (tmp_path / "note.txt").write_text("燃气泄漏时请先关闭阀门。", encoding="utf-8")
    ingest = run(workspace, "data", "ingest", str(tmp_path / "note.txt"), "-c", "docs")
    assert ingest.exit_code == 0, ingest.output
    with opened(None, workspace) as ws:
        save_dataset(ws.catalog, ws.artifacts, "qa", [{"id": "1", "text": "hi", "meta": {}}])
    out = tmp_path / "qa.jsonl"
    assert run(workspace, "data", "export", "qa", "--output", str(out)).exit_code == 0
    events = json.loads(run(workspace, "audit", "list", "--json").stdout)["data"]
    exported, ingested = events
    assert (ingested["action"], ingested["target"]) == ("data.ingested", "docs")
    assert ingested["details"]["counts"]["ingested"] == 1
    assert ingested["details"]["documents"] == ["docs/note.txt@1"]
    assert (exported["action"], exported["target"]) == ("data.exported", "qa@1")
    assert exported["details"] == {"path": str(out.resolve()), "rows": 1, "format": "jsonl"}
