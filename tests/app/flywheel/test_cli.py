"""`feilun flywheel ...` end to end on a turn that stops at curation (no feedback yet)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from feilun.cli.main import app
from feilun.core.errors import NotFound

from .conftest import RECIPES, tiny_config


def test_turn_list_status_report_and_rollback(workspace_path: Path, tmp_path: Path) -> None:
    def feilun(*args: str) -> tuple[int, str, BaseException | None]:
        result = CliRunner().invoke(app, [*args, "--workspace", str(workspace_path)])
        return result.exit_code, result.output, result.exception

    curate = {"rules": str(RECIPES / "curate.yaml"), "dataset": "tiny-feedback"}
    config = tiny_config(tmp_path, curate=curate)
    code, out, _ = feilun("flywheel", "turn", "--config", str(config), "--json")
    assert code == 0, out
    turn = json.loads(out[out.index("{") :])
    assert (turn["number"], turn["status"]) == (1, "stopped")

    code, out, _ = feilun("flywheel", "list", "--json")
    assert [(t["name"], t["number"], t["status"]) for t in json.loads(out)] == [
        ("tiny", 1, "stopped")
    ]
    code, out, _ = feilun("flywheel", "status", "--name", "tiny")
    assert code == 0 and "turn tiny #1: stopped (step report)" in out

    code, out, _ = feilun("flywheel", "report", "--name", "tiny", "--out", str(tmp_path / "r"))
    assert code == 0 and (tmp_path / "r" / "report.html").is_file()
    assert json.loads((tmp_path / "r" / "report.json").read_text())["turns"][0]["status"] == (
        "stopped"
    )

    code, out, error = feilun("flywheel", "rollback", "--alias", "prod")
    assert code == 1 and isinstance(error, NotFound)
