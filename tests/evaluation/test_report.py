"""`feilun eval report`: HTML, Markdown and JSON of stored reports from two local endpoints.

`old` and `new` answer a QA task and a multiple-choice task differently, so the reports have
wrong items, one generation holding a `<script>` tag, and items that flip between them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from feilun.cli.main import app
from feilun.evaluation.rendering import PROMPT_READERS, Shown, _answer, _task_blocks, item_prompts

from .conftest import ChatEndpoint

N_BOXES = 40
SCRIPT = "<script>alert('x')</script>"


def invoke(env: dict[str, str], *args: str, code: int = 0) -> str:
    """Run the CLI in-process; its stdout, after checking the exit code."""
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == code, result.output
    return result.stdout


def _old(body: dict[str, Any]) -> str:
    question = body["messages"][-1]["content"]
    if box := re.search(r"box (\d+)\?", question):
        k = int(box.group(1))
        return SCRIPT if k == 0 else f"red {k} box"  # wordy: em 0, f1 0.8
    return "A"


def _new(body: dict[str, Any]) -> str:
    question = body["messages"][-1]["content"]
    if box := re.search(r"box (\d+)\?", question):
        k = int(box.group(1))
        return f"red {k}" if k % 2 == 0 else "green"  # exact on even boxes, wrong on odd
    return "B"


def make_reports(env: dict[str, str], folder: Path) -> dict[str, str]:
    """Data files, a two-task suite, and the report ids of `old` and `new` on it."""
    boxes = [
        {"id": f"b{k}", "question": f"What colour is box {k}?", "answers": [f"red {k}"]}
        for k in range(N_BOXES)
    ]
    (folder / "boxes.jsonl").write_text("\n".join(json.dumps(r) for r in boxes), "utf-8")
    options = [
        {
            "id": f"m{k}",
            "question": f"Which <b>option</b> is number {k}?",
            "choices": ["x", "y"],
            "answer": "B",
        }
        for k in range(4)
    ]
    (folder / "options.jsonl").write_text("\n".join(json.dumps(r) for r in options), "utf-8")
    suite = folder / "suite.yaml"
    suite.write_text(
        "name: pair\ntasks:\n"
        f"  - {{name: boxes, kind: qa, path: {folder / 'boxes.jsonl'}, max_tokens: 8}}\n"
        f"  - {{name: options, kind: mc, path: {folder / 'options.jsonl'}, format: mmlu}}\n",
        "utf-8",
    )
    reports = {}
    for name, reply in (("old", _old), ("new", _new)):
        with ChatEndpoint(reply) as server:
            invoke(env, "models", "add", name, "--upstream", server.url)
            out = invoke(env, "eval", "run", str(suite), "--model", name, "--json")
        reports[name] = json.loads(out)["report"]
    return reports


def test_html_report_shows_tasks_charts_escaped_items_and_flips(
    env: dict[str, str], tmp_path: Path
) -> None:
    reports = make_reports(env, tmp_path)
    page = tmp_path / "out" / "report.html"
    out = invoke(
        env, "eval", "report", reports["new"], "--html", str(page), "--against", reports["old"]
    )
    assert f"wrote {page}" in out
    html = page.read_text("utf-8")
    assert "<script" not in html  # no scripts, and nothing fetched from elsewhere:
    assert "http" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html  # old's generation
    assert "Which &lt;b&gt;option&lt;/b&gt; is number 1?" in html  # prompts read back, escaped
    for heading in ("Task boxes (qa)", "Task options (mc)", "Compared with pair@1"):
        assert heading in html
    overview = re.search(r"<figure><figcaption>Primary metric per task.*?</figure>", html).group()
    assert overview.count('class="bar"') == 2 * 2  # two tasks, two reports
    assert overview.count('class="whisker"') == 4
    # new vs old on boxes f1: box 0 and the even boxes' exact answers flip to right (f1 0.8 -> 1
    # is not a flip), the odd boxes to wrong; on options every item flips to right
    flips = html[html.index("boxes: items that flipped") :]
    assert "1 to right, 20 to wrong" in flips
    assert "4 to right, 0 to wrong" in flips
    assert ">b0</td><td>→ right</td><td>What colour is box 0?</td>" in flips


def test_markdown_and_json_views(env: dict[str, str], tmp_path: Path) -> None:
    reports = make_reports(env, tmp_path)
    markdown = invoke(env, "eval", "report", "pair@2")  # no file: Markdown on stdout
    assert markdown.startswith("# EvalReport pair@2: new")
    assert "| metric | score | 95% CI |" in markdown and "| em | 0.5000 |" in markdown
    assert "20 items scored below 1, lowest first; all of them:" in markdown
    assert "<svg" not in markdown
    path = tmp_path / "report.md"
    invoke(env, "eval", "report", "pair@1", "--markdown", str(path), "--against", "pair@2")
    text = path.read_text("utf-8")
    assert "&lt;script&gt;" in text and "<script>" not in text
    assert "| boxes | f1 |" in text and "Compared with pair@2" in text

    summary = json.loads(
        invoke(env, "eval", "report", reports["new"], "--json", "--against", "pair@1")
    )
    assert summary["id"] == reports["new"] and summary["scores"]["boxes/em"] == 0.5
    boxes = summary["tasks"][0]
    assert boxes["name"] == "boxes" and set(boxes["metrics"]) == {"em", "f1", "contains"}
    assert "items" not in boxes
    compared = summary["comparison"]
    assert compared["a"]["report"] == reports["old"] and compared["b"]["report"] == reports["new"]
    assert compared["tasks"][1]["mcnemar"]["b_only_right"] == 4


def test_unknown_report_names_how_to_list_them(env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["eval", "report", "nope@1"], env=env)
    assert result.exit_code == 1 and "feilun eval list" in str(result.exception)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A new empty workspace: the reports come from endpoints, no local model is needed."""
    env = {"FEILUN_WORKSPACE": str(tmp_path / "ws")}
    invoke(env, "init")
    return env


@pytest.mark.parametrize(("mode", "wrong"), [("rubric", "2 items scored below 5"), (None, "")])
def test_wrong_items_are_those_below_the_tasks_top_mark(mode: str | None, wrong: str) -> None:
    task = {
        "name": "style",
        "kind": "judge" if mode else "qa",
        "config": {"mode": mode} if mode else {},
        "n": 2,
        "errors": 0,
        "skipped": [],
        "primary": "score",
        "path": "gone.jsonl",
        "sha256": "0",
        "metrics": {"score": {"value": 0.9, "low": 0.8, "high": 1.0}},
        "items": [{"id": "a", "score": 1.0}, {"id": "b", "score": 1.0}]
        if not mode
        else [{"id": "a", "score": 4.0}, {"id": "b", "score": 3.0}],
    }
    shown = Shown(SimpleNamespace(ref="evr@1"), {"tasks": [task]})  # type: ignore[arg-type]
    text = "\n".join(map(str, _task_blocks(task, {}, shown, None)))
    if wrong:
        assert wrong in text  # every rubric score is under 5, even though none reaches it
    else:
        assert "Every scored item has full marks (1)." in text


def test_rag_judge_and_parity_tasks_show_their_prompts(tmp_path: Path) -> None:
    rows = {
        "rag": {"id": "r1", "question": "How early?", "answer": "48 h"},
        "judge": {"id": "j1", "question": "Explain the valve.", "reference": "Close it."},
        "parity": {"id": "p1", "prompt": "Say hi."},
    }
    for kind, row in rows.items():
        path = tmp_path / f"{kind}.jsonl"
        path.write_text(json.dumps(row) + "\n", encoding="utf-8")
        sha256 = PROMPT_READERS[kind](path)[0]
        task = {"kind": kind, "path": str(path), "sha256": sha256}
        assert item_prompts(task) == {row["id"]: row.get("question", row.get("prompt"))}
        path.write_text(json.dumps(row) + "\n\n", encoding="utf-8")  # changed since the run
        assert item_prompts(task) == {}


def test_a_parity_row_shows_both_answers() -> None:
    row = {"id": "p1", "in_process": "Hello.", "served": "Hi!", "score": 0.0}
    assert _answer(row) == "in process: Hello. | served: Hi!"
