"""`feilun data clean|list|show|diff|export` in-process, on a workspace made by `feilun init`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from feilun.cli.main import app
from feilun.core.errors import ConfigError, NotFound, PluginError
from feilun.core.records import Document

RECIPE = "recipes/data/default.yaml"
ZH_DOCS = sorted(Path("../shared/data/industry/docs/zh").glob("*.md"))[:3]
PHONE_NOTE = (
    "燃气泄漏请立即拨打抢修电话，值班人员手机 13912345678，我们将在三十分钟内到达现场处理。"
)


def invoke(env: dict[str, str], *args: str) -> tuple[str, str]:
    result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout, result.stderr


@pytest.fixture
def workspace(env: dict[str, str]) -> dict[str, str]:
    """A workspace with a collection `laws`: three regulations, a copy, a short note, a phone."""
    from feilun.app.workspace import opened

    invoke(env, "init")
    texts = {f"laws/{p.name}": p.read_text(encoding="utf-8") for p in ZH_DOCS}
    texts["laws/copy.md"] = texts[f"laws/{ZH_DOCS[0].name}"]
    texts["laws/short.txt"] = "第一条"
    texts["laws/phone.txt"] = PHONE_NOTE
    with opened(None, env) as ws:
        for name, text in texts.items():
            ws.catalog.save(Document(name=name, collection="laws", language="zh", text=text))
        ws.catalog.save(Document(name="other/x.md", collection="other", text="不在本集合"))
    return env


def test_help_of_every_command() -> None:
    for command in ("clean", "list", "show", "diff", "export"):
        result = CliRunner().invoke(app, ["data", command, "--help"])
        assert result.exit_code == 0 and "Usage" in result.stdout


def test_clean_show_diff_export(workspace: dict[str, str], tmp_path: Path) -> None:
    stdout, stderr = invoke(
        workspace, "data", "clean", "laws", "--recipe", RECIPE, "--dataset", "laws-clean"
    )
    assert "laws: 6 items from 6 documents" in stdout
    for operator in ("normalize", "language", "quality", "pii", "exact_dedup", "near_dedup"):
        assert operator in stdout and operator in stderr  # the table, and a progress bar each
    assert "too_short 1" in stdout and "exact_duplicate 1" in stdout
    assert "saved dataset laws-clean@1: 4 rows, 2 rejected" in stdout
    assert "feilun data show laws-clean@1 --rejected" in stdout

    again = json.loads(
        invoke(
            workspace,
            *("data", "clean", "laws", "--recipe", RECIPE, "--dataset", "laws-clean", "--json"),
        )[0]
    )
    first, second = (
        json.loads(invoke(workspace, "data", "show", f"laws-clean@{v}", "--json")[0])
        for v in (1, 2)
    )
    assert again["dataset"]["ref"] == "laws-clean@2"
    assert [r["operator"] for r in again["reports"]][-1] == "near_dedup"
    assert first["dataset"]["content_hash"] == second["dataset"]["content_hash"]
    assert first["dataset"]["id"] != second["dataset"]["id"]
    assert len(first["dataset"]["inputs"]) == 6  # lineage: the documents of `laws` only
    assert len(first["rows"]) == 4
    masked = [r["text"] for r in first["rows"] if "[手机号]" in r["text"]]
    assert len(masked) == 1 and "13912345678" not in masked[0]

    stdout, _ = invoke(workspace, "data", "show", "laws-clean")
    assert "laws-clean@2" in stdout and "rows (4 of 4)" in stdout
    assert "[手机号]" in stdout  # user text is shown as written, never read as Rich markup
    assert "2 items were rejected: `feilun data show laws-clean@2 --rejected`" in stdout
    stdout, _ = invoke(workspace, "data", "show", "laws-clean@1", "--rejected", "--json")
    reasons = sorted(r["reason"].split(":")[0] for r in json.loads(stdout)["rejected"])
    assert reasons == ["exact_duplicate", "too_short"]
    stdout, _ = invoke(workspace, "data", "show", "laws-clean@1", "--rejected")
    assert "rejected items (2 of 2)" in stdout and "exact_dedup" in stdout

    stdout, _ = invoke(workspace, "data", "list")
    assert "laws-clean@2" in stdout and "laws-clean@1" in stdout
    listed = json.loads(invoke(workspace, "data", "list", "laws-clean", "--json")[0])
    assert [d["ref"] for d in listed] == ["laws-clean@2", "laws-clean@1"]

    stdout, _ = invoke(workspace, "data", "diff", "laws-clean@1", "laws-clean@2")
    assert "same content: 0 added, 0 removed, 0 changed, 4 unchanged" in stdout

    out = tmp_path / "laws.parquet"
    stdout, _ = invoke(workspace, "data", "export", "laws-clean@1", "-f", "parquet", "-o", str(out))
    assert f"exported laws-clean@1 (4 rows) to {out}" in stdout
    import pyarrow.parquet as pq

    assert pq.read_table(out).column("id").to_pylist() == [r["id"] for r in first["rows"]]
    jsonl = tmp_path / "laws.jsonl"
    invoke(workspace, "data", "export", "laws-clean@1", "--output", str(jsonl))
    assert [json.loads(line) for line in jsonl.read_text().splitlines()] == first["rows"]


def test_rows_show_the_ids_their_source_gave_them(env: dict[str, str], tmp_path: Path) -> None:
    prompts = Path("../shared/data/xstest/prompts.jsonl")
    own_ids = [json.loads(line)["id"] for line in prompts.read_text("utf-8").splitlines()]
    recipe = tmp_path / "normalize.yaml"
    recipe.write_text("description: only normalise\noperators:\n  - {op: normalize}\n")
    invoke(env, "init")
    invoke(env, "data", "ingest", str(prompts), "--collection", "xs", "--json")
    invoke(env, "data", "clean", "xs", "--recipe", str(recipe), "--dataset", "xs")
    shown = json.loads(invoke(env, "data", "show", "xs", "-n", "200", "--json")[0])
    assert [row["meta"]["source_id"] for row in shown["rows"]] == own_ids
    assert {row["id"].rsplit("#", 1)[0] for row in shown["rows"]} == {shown["dataset"]["inputs"][0]}
    stdout, _ = invoke(env, "data", "show", "xs", "-n", "2")
    assert "source id" in stdout and own_ids[0] in stdout and own_ids[1] in stdout


def test_overrides_reach_the_recipe(workspace: dict[str, str]) -> None:
    stdout, _ = invoke(
        workspace,
        *("data", "clean", "laws", "--recipe", RECIPE, "--dataset", "d", "--json"),
        "quality.min_chars=1",
    )
    manifest = json.loads(stdout)["dataset"]
    assert manifest["recipe"]["operators"][2]["params"]["min_chars"] == 1
    assert manifest["meta"]["removed_by_reason"] == {"exact_duplicate": 1}


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        (("clean", "nowhere", "--recipe", RECIPE, "--dataset", "d"), NotFound, "no documents"),
        (("clean", "laws", "--recipe", "nope.yaml", "--dataset", "d"), ConfigError, "nope.yaml"),
        (("clean", "laws", "--recipe", RECIPE, "--dataset", "a b"), ConfigError, "not allowed"),
        (
            ("clean", "laws", "--recipe", RECIPE, "--dataset", "d", "--engine", "spark"),
            PluginError,
            "registered: local, ray",
        ),
        (
            ("clean", "laws", "--recipe", RECIPE, "--dataset", "d", "near_dedup.threshold=2"),
            ConfigError,
            r"operators\[5\]\.threshold",
        ),
        (("show", "missing@1"), NotFound, "no dataset named 'missing'"),
        (("diff", "missing", "other"), NotFound, "no dataset named"),
    ],
)
def test_errors_name_the_problem(
    workspace: dict[str, str], args: tuple[str, ...], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        CliRunner().invoke(app, ["data", *args], env=workspace, catch_exceptions=False)
