"""`feilun watermark detect` on a workspace whose settings turn the watermark on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from feilun.app.workspace import opened
from feilun.cli.main import app
from feilun.core.errors import BadInput, ConfigError
from feilun.core.protocols import GenerationParams
from feilun.core.records import Message
from feilun.governance.labels import load_or_create_key

PROMPT = [Message(role="user", content="Write about pipes, valves and meters.")]
PARAMS = GenerationParams(max_tokens=300, temperature=1.0, seed=3)


@pytest.fixture
def workspace(tiny_workspace: Path) -> Path:
    """A workspace with the tiny random Llama registered as `tiny`."""
    return tiny_workspace


def answer(workspace: Path, env: dict[str, str]) -> str:
    with opened(workspace, env=env) as ws:
        return ws.models.open("tiny").chat(PROMPT, PARAMS).text


def detect(workspace: Path, *args: str) -> dict[str, object]:
    result = CliRunner().invoke(
        app,
        ["watermark", "detect", *args, "--model", "tiny", "--json"],
        env={"FEILUN_WORKSPACE": str(workspace)},
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    out: dict[str, object] = json.loads(result.stdout)
    return out


def test_the_setting_watermarks_answers_and_detect_finds_it(
    workspace: Path, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="no deployment key"):
        detect(workspace, "some text")
    marked = answer(workspace, {"FEILUN_WATERMARK": "true"})
    assert (workspace / "safety" / "label.key").is_file()
    plain = answer(workspace, {})
    assert marked != plain
    found = detect(workspace, marked)
    assert found["watermarked"] is True and float(found["z"]) > 4  # type: ignore[arg-type]
    assert found["gamma"] == 0.25 and int(found["scored_tokens"]) >= 16  # type: ignore[call-overload]
    missed = detect(workspace, plain)
    assert missed["watermarked"] is False
    assert "no watermark detected with this deployment's key" in str(missed["message"])
    file = tmp_path / "answer.txt"
    file.write_bytes(marked.encode())
    assert detect(workspace, "--file", str(file))["z"] == found["z"]


def test_detect_needs_one_input_and_enough_text(workspace: Path) -> None:
    load_or_create_key(workspace / "safety" / "label.key")
    with pytest.raises(ConfigError, match="give TEXT or --file"):
        detect(workspace)
    with pytest.raises(BadInput, match="the minimum is 16"):
        detect(workspace, "Too short to judge.")
