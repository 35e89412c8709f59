"""`feilun kb …` in-process on one workspace made by `feilun init`, plus one real exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from feilun.cli import kb as kb_cli
from feilun.cli.main import app
from feilun.core.errors import BadInput, ConfigError, NotFound

from .conftest import GAS, LICENSE, OSHA, SMOKING, document


def invoke(env: dict[str, str], *args: str) -> tuple[str, str]:
    result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout, result.stderr


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A workspace with collection `laws` (three regulations) and `extra` (one)."""
    from feilun.app.workspace import opened

    env = {"FEILUN_WORKSPACE": str(tmp_path_factory.mktemp("kb") / "ws")}
    invoke(env, "init")
    with opened(None, env) as ws:
        for path in (GAS, LICENSE, OSHA):
            ws.catalog.save(document(path))
        ws.catalog.save(document(SMOKING, collection="extra"))
    return env


def test_help_of_every_command() -> None:
    for command in ("create", "add", "remove", "list", "show", "query", "eval", "terms", "delete"):
        result = CliRunner().invoke(app, ["kb", command, "--help"])
        assert result.exit_code == 0 and "Usage" in result.stdout


def test_create_query_change_and_inspect(env: dict[str, str]) -> None:
    stdout, stderr = invoke(env, "kb", "create", "laws", "--from", "laws", "--embedder", "none")
    assert "knowledge base laws@1: 3 documents" in stdout and "chunk" in stderr
    stdout, _ = invoke(env, "kb", "query", "laws", "临时停气要提前多久通知用户？", "-m", "bm25")
    assert "第二十条" in stdout and "城镇燃气" in stdout
    stdout, _ = invoke(
        env, "kb", "query", "laws", "penalties for employers", "-m", "bm25", "-f", "lang=en",
        "--json",
    )  # fmt: skip
    hits = json.loads(stdout)["hits"]
    assert len(hits) == 5 and {h["lang"] for h in hits} == {"en"}
    assert {"chunk_id", "document_id", "title", "page", "heading_path", "text", "score"} <= set(
        hits[0]
    )

    stdout, _ = invoke(env, "kb", "add", "laws", "--from", "extra", "--json")
    assert json.loads(stdout)["ref"] == "laws@2"
    stdout, _ = invoke(env, "kb", "remove", "laws", "extra/" + SMOKING.name)
    assert "laws@3: 3 documents" in stdout and "1 removed" in stdout
    invoke(env, "kb", "terms", "add", "laws", "燃气经营者", "PE-100")
    stdout, _ = invoke(env, "kb", "terms", "list", "laws")
    assert stdout.split() == ["燃气经营者", "PE-100"]

    stdout, _ = invoke(env, "kb", "list")
    assert "laws@4" in stdout
    stdout, _ = invoke(env, "kb", "list", "--json")
    listed = {r["ref"]: r for r in json.loads(stdout)}
    assert listed["laws@4"]["embedder"] == "" and listed["laws@4"]["meta"]["documents"] == 3
    stdout, _ = invoke(env, "kb", "show", "laws", "--json")
    shown = json.loads(stdout)
    assert shown["ref"] == "laws@4" and len(shown["versions"]) == 4
    assert shown["manifest"]["terms"] == ["燃气经营者", "PE-100"]
    stdout, _ = invoke(env, "kb", "show", "laws@1")
    assert "collection:laws" in stdout and "400 tokens, 60 overlap" in stdout


def test_bad_input(env: dict[str, str]) -> None:
    invoke(
        env,
        "kb",
        "create",
        "small",
        "--from",
        "laws",
        "--embedder",
        "none",
        "--chunk-tokens",
        "200",
    )
    with pytest.raises(BadInput, match="the query is empty"):
        invoke(env, "kb", "query", "small", "   ")
    with pytest.raises(NotFound, match="no knowledge base named 'nope'; knowledge bases: .*small"):
        invoke(env, "kb", "query", "nope", "燃气")
    with pytest.raises(ConfigError, match="--overlap 300 must be < --chunk-tokens 200"):
        invoke(
            env, "kb", "create", "x", "--from", "laws", "--chunk-tokens", "200", "--overlap", "300"
        )
    with pytest.raises(ConfigError, match="--filter 'lang' is not KEY=VALUE"):
        invoke(env, "kb", "query", "small", "燃气", "-f", "lang")
    stdout, stderr = invoke(
        env, "kb", "query", "small", "燃气", "-m", "bm25", "-k", "500", "--json"
    )
    assert "k=500 is more than 100" in stderr and len(json.loads(stdout)["hits"]) == 63  # all
    with pytest.raises(ConfigError, match="no dense index"):
        invoke(env, "kb", "query", "small", "燃气", "-m", "dense")


def test_hybrid_query_of_a_bm25_only_kb_warns_and_uses_bm25(
    env: dict[str, str], tmp_path: Path
) -> None:
    invoke(env, "kb", "create", "plain", "--from", "laws", "--embedder", "none")
    question = "临时停气要提前多久通知用户？"
    stdout, stderr = invoke(env, "kb", "query", "plain", question, "--json")  # hybrid: default
    assert "warning: knowledge base plain@1 has no dense index" in stderr
    hybrid = json.loads(stdout)
    bm25, quiet = invoke(env, "kb", "query", "plain", question, "-m", "bm25", "--json")
    assert hybrid["mode"] == "bm25" and hybrid["hits"] == json.loads(bm25)["hits"]
    assert "warning" not in quiet
    stdout, _ = invoke(env, "kb", "query", "plain", question)
    assert "plain: bm25" in stdout and "第二十条" in stdout
    queries, qrels = tmp_path / "q.jsonl", tmp_path / "qrels.tsv"
    queries.write_text(json.dumps({"_id": "q1", "text": question}, ensure_ascii=False))
    qrels.write_text(f"query-id\tcorpus-id\tscore\nq1\tlaws/{GAS.name}\t1\n", encoding="utf-8")
    stdout, stderr = invoke(
        env, "kb", "eval", "plain", "--queries", str(queries), "--qrels", str(qrels), "--json"
    )
    assert "has no dense index" in stderr and json.loads(stdout)["mode"] == "bm25"


def test_delete_asks_refuses_without_a_terminal_and_lists_unknown_names(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    invoke(env, "kb", "create", "doomed", "--from", "extra", "--embedder", "none")
    invoke(env, "kb", "terms", "add", "doomed", "控烟")  # doomed@2
    with pytest.raises(ConfigError, match=r"refusing to delete .*'doomed' \(2 versions\).*--yes"):
        invoke(env, "kb", "delete", "doomed")
    with pytest.raises(NotFound, match="no knowledge base named 'nope'; knowledge bases: .*doomed"):
        invoke(env, "kb", "delete", "nope", "--yes")
    with pytest.raises(ConfigError, match="'doomed@1' names one version"):
        invoke(env, "kb", "delete", "doomed@1")
    monkeypatch.setattr(kb_cli, "_is_interactive", lambda: True)
    declined = CliRunner().invoke(app, ["kb", "delete", "doomed"], env=env, input="n\n")
    assert declined.exit_code == 1 and "Aborted" in declined.output
    assert json.loads(invoke(env, "kb", "show", "doomed", "--json")[0])["ref"] == "doomed@2"
    accepted = CliRunner().invoke(app, ["kb", "delete", "doomed"], env=env, input="y\n")
    assert accepted.exit_code == 0, accepted.output
    assert "deleted knowledge base doomed: 2 versions" in accepted.stdout
    assert "doomed" not in invoke(env, "kb", "list")[0]
    with pytest.raises(NotFound, match="no knowledge base named 'doomed'"):
        invoke(env, "kb", "query", "doomed", "控烟")
    stdout, _ = invoke(env, "kb", "create", "doomed", "--from", "extra", "--embedder", "none")
    assert "doomed@1" in stdout  # the name is free again
    stdout, _ = invoke(env, "kb", "delete", "doomed", "--yes", "--json")
    assert json.loads(stdout) == {"deleted": "doomed", "versions": ["doomed@1"]}


def test_eval_with_queries_and_beir(env: dict[str, str], tmp_path: Path) -> None:
    invoke(env, "kb", "create", "evalkb", "--from", "laws", "--embedder", "none")
    queries = tmp_path / "q.jsonl"
    queries.write_text(
        json.dumps(
            {"_id": "q1", "text": "燃气经营者停业需要提前多少个工作日报告"}, ensure_ascii=False
        ),
        encoding="utf-8",
    )
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text(f"query-id\tcorpus-id\tscore\nq1\tlaws/{GAS.name}\t1\n", encoding="utf-8")
    files = ["--queries", str(queries), "--qrels", str(qrels)]
    stdout, _ = invoke(env, "kb", "eval", "evalkb", *files, "-m", "bm25", "--json")
    assert json.loads(stdout)["ndcg@10"] == 1.0
    stdout, _ = invoke(
        env, "kb", "eval", "--beir", "../shared/data/cmrc2018-retrieval", "-m", "bm25"
    )
    assert "ndcg@10" in stdout and "1002 queries" in stdout
    with pytest.raises(ConfigError, match="give a knowledge base NAME"):
        invoke(env, "kb", "eval")


def test_errors_exit_1_with_one_line(env: dict[str, str]) -> None:
    feilun = Path(sys.executable).parent / "feilun"
    result = subprocess.run(
        [str(feilun), "kb", "query", "nope", " "],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        'error: the query is empty — ask a question, e.g. `feilun kb query KB "…"`'
    )
