from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from feilun.cli.main import app

FEILUN = str(Path(sys.executable).with_name("feilun"))


def run_cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """Run the real console script (so FeilunError handling and exit codes are real)."""
    result = subprocess.run(
        [FEILUN, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=240
    )
    return result.returncode, result.stdout, result.stderr


def invoke(env: dict[str, str], *args: str) -> tuple[int, str]:
    """Run a command in-process (faster; FeilunErrors propagate as exceptions)."""
    result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.stdout


def test_help_is_instant_and_does_not_import_torch() -> None:
    code = (
        "import sys, feilun.cli.main; print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
    started = time.perf_counter()
    subprocess.run([FEILUN, "--help"], capture_output=True, check=True)
    assert time.perf_counter() - started < 0.5 * 3  # 0.5 s target; 3x slack for a loaded CI box


def test_every_command_has_help() -> None:
    for args in (["init"], ["doctor"], ["chat"], ["demo"], ["models", "add"], ["models", "show"]):
        code, output = invoke({}, *args, "--help")
        assert code == 0 and "Usage" in output


def test_missing_workspace_is_one_clear_line(env: dict[str, str]) -> None:
    code, _stdout, stderr = run_cli(env, "models", "list")
    assert code == 1
    assert stderr.count("\n") == 1
    assert "no Feilun workspace" in stderr and "feilun init" in stderr
    assert "Traceback" not in stderr


def test_init_models_add_show_alias_rm(env: dict[str, str], tiny_model_dir: Path) -> None:
    code, output = invoke(env, "init", "--json")
    assert code == 0 and json.loads(output)["created"]
    code, output = invoke(env, "models", "add", "tiny", "--path", str(tiny_model_dir))
    assert code == 0 and "registered tiny@1" in output
    code, output = invoke(env, "models", "list", "--json")
    names = [m["name"] for m in json.loads(output)["models"]]
    assert names == ["smollm2-135m-instruct", "tiny"]
    code, output = invoke(env, "models", "show", "smollm2-135m-instruct", "--json")
    card = json.loads(output)
    assert card["architecture"] == "llama"
    assert card["context_length"] == 8192
    assert card["parameters"] == 134_515_008
    assert "<|im_start|>" in card["chat_template"]
    assert len(card["sha256"]) == 64
    code, output = invoke(env, "models", "alias", "prod", "tiny")
    assert "prod → tiny@1" in output
    code, output = invoke(env, "models", "rm", "prod")
    code, output = invoke(env, "models", "rm", "tiny")
    assert code == 0 and "removed tiny" in output


def test_bad_input_gets_one_line_and_exit_1(env: dict[str, str], tmp_path: Path) -> None:
    assert run_cli(env, "init")[0] == 0
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 10)
    cases = [
        (["models", "show", "gpt-9"], "registered: smollm2-135m-instruct"),
        (["models", "add", "x", "--gguf", str(bad)], "GGUF"),
        (["models", "add", "x", "--path", str(tmp_path)], "not a model folder"),
        (["models", "add", "x"], "exactly one source"),
        (["chat", "gpt-9", "hi"], "unknown model 'gpt-9'"),
    ]
    for args, expected in cases:
        code, _, stderr = run_cli(env, *args)
        assert code == 1, args
        assert expected in stderr, (args, stderr)
        assert "Traceback" not in stderr


@pytest.mark.parametrize("flag", ["--version"])
def test_version(flag: str) -> None:
    code, output = invoke({}, flag)
    assert code == 0 and output.startswith("feilun ")


def test_chat_json_with_a_registered_model(env: dict[str, str], tiny_model_dir: Path) -> None:
    invoke(env, "init")
    invoke(env, "models", "add", "tiny", "--path", str(tiny_model_dir))
    code, output = invoke(env, "chat", "tiny", "Hello", "--max-tokens", "5", "--json")
    result = json.loads(output)
    assert code == 0
    assert result["usage"]["completion_tokens"] <= 5
    assert result["usage"]["prompt_tokens"] > 0
    assert result["finish_reason"] in ("stop", "length")
    assert result["timings"]["load_s"] >= 0
    code, output = invoke(env, "chat", "tiny", "Hello", "--max-tokens", "5")
    assert code == 0 and output.endswith("\n")


def test_prompt_over_the_context_names_the_limit(env: dict[str, str], tiny_model_dir: Path) -> None:
    assert run_cli(env, "init")[0] == 0
    assert run_cli(env, "models", "add", "tiny", "--path", str(tiny_model_dir))[0] == 0
    context = json.loads((tiny_model_dir / "config.json").read_text())["max_position_embeddings"]
    code, _, stderr = run_cli(env, "chat", "tiny", "word " * context * 2)
    assert code == 1
    assert str(context) in stderr and "Traceback" not in stderr


def test_locked_database_is_one_clear_line(env: dict[str, str]) -> None:
    import sqlite3

    assert run_cli(env, "init")[0] == 0
    holder = sqlite3.connect(Path(env["FEILUN_WORKSPACE"]) / "feilun.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        code, _, stderr = run_cli(
            {**env, "FEILUN_BUSY_TIMEOUT_MS": "200"},
            "models",
            "add",
            "x",
            "--upstream",
            "http://127.0.0.1:9/v1",
        )
    finally:
        holder.rollback()
        holder.close()
    assert code == 1
    assert "locked" in stderr and "feilun.db" in stderr and "Traceback" not in stderr
