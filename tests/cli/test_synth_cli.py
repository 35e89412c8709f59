"""`feilun data synth-qa` in-process, on a workspace with a real tiny model registered."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from feilun.cli.main import app
from feilun.core.errors import ConfigError, NotFound
from feilun.core.records import Document

TEXTS = {
    "laws/gas.md": "第五条 国务院建设主管部门负责全国的燃气管理工作。"
    "县级以上地方人民政府燃气管理部门负责本行政区域内的燃气管理工作。",
    "laws/meter.md": "Each operator shall inspect every gas meter once a year and keep the "
    "inspection records for five years.",
}


def invoke(env: dict[str, str], *args: str) -> tuple[str, str]:
    result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout, result.stderr


@pytest.fixture
def workspace(env: dict[str, str], tiny_model_dir: Path) -> dict[str, str]:
    """A workspace with the tiny random Llama as `tiny` and a collection `laws` of two texts."""
    from feilun.app.workspace import opened

    invoke(env, "init")
    with opened(None, env) as ws:
        ws.models.add("tiny", "safetensors", str(tiny_model_dir))
        for name, text in TEXTS.items():
            ws.catalog.save(Document(name=name, collection="laws", text=text))
    return env


def test_help() -> None:
    result = CliRunner().invoke(app, ["data", "synth-qa", "--help"])
    assert result.exit_code == 0
    for option in ("--dataset", "--model", "--per-chunk", "--max-passages", "--seed", "--language"):
        assert option in result.stdout


def test_synth_qa_saves_a_dataset_and_counts_every_candidate(workspace: dict[str, str]) -> None:
    args = ("data", "synth-qa", "laws", "-d", "laws-qa", "--model", "tiny", "--seed", "3")
    stdout, stderr = invoke(workspace, *args)
    assert "passages" in stderr and "2/2" in stderr  # the progress bar
    assert "synth-qa laws with tiny@1" in stdout and "candidates" in stdout
    assert "saved dataset laws-qa@1" in stdout

    again = json.loads(invoke(workspace, *args, "--json")[0])
    assert again["dataset"]["ref"] == "laws-qa@2" and again["passages"] == 2
    rejected = sum(again["rejected_by_reason"].values())
    assert again["generated"] == again["kept"] + rejected >= 2  # a random model writes junk
    assert again["dataset"]["meta"]["rejected_count"] == rejected
    manifest = json.loads(invoke(workspace, "data", "show", "laws-qa@1", "--json")[0])["dataset"]
    assert manifest["content_hash"] == again["dataset"]["content_hash"]  # same seed, same rows
    recipe = manifest["recipe"]
    assert (recipe["model"], recipe["seed"], recipe["collection"]) == ("tiny@1", 3, "laws")
    assert len(manifest["inputs"]) == 2  # lineage: the documents of `laws`
    shown = json.loads(
        invoke(workspace, "data", "show", "laws-qa@1", "--rejected", "-n", "1000", "--json")[0]
    )
    writers = {writer for writer, reasons in again["rejected_by_writer"].items() if reasons}
    assert {r["operator"] for r in shown["rejected"]} == {f"synth_qa:{w}" for w in writers}


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        (("nowhere", "-d", "qa", "--model", "tiny"), NotFound, "no documents"),
        (("laws", "-d", "qa", "--model", "missing"), NotFound, "unknown model 'missing'"),
        (("laws", "-d", "a b", "--model", "tiny"), ConfigError, "not allowed"),
    ],
)
def test_errors_name_the_problem(
    workspace: dict[str, str], args: tuple[str, ...], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        CliRunner().invoke(app, ["data", "synth-qa", *args], env=workspace, catch_exceptions=False)


def test_show_previews_chat_rows_as_turns(workspace: dict[str, str]) -> None:
    from feilun.app.workspace import opened
    from feilun.data.datasets import save_dataset

    answer = "Each operator shall inspect every gas meter once a year. " * 3
    rows = [
        {
            "id": "qa_1",
            "messages": [
                {"role": "user", "content": "Who inspects gas meters?"},
                {"role": "assistant", "content": answer},
            ],
            "meta": {"answer_mode": "extractive"},
        }
    ]
    with opened(None, workspace) as ws:
        save_dataset(ws.catalog, ws.artifacts, "qa", rows)
    stdout, _ = invoke(workspace, "data", "show", "qa@1")
    assert "user: Who inspects gas meters?" in stdout
    assert "assistant: Each operator shall" in stdout and "…" in stdout  # one line, cut
    assert "'role'" not in stdout and "answer_mode" not in stdout  # no dict repr


@pytest.mark.slow
@pytest.mark.integration
def test_packaged_smollm2_keeps_grounded_pairs(env: dict[str, str]) -> None:
    """The packaged model, as `feilun data synth-qa` opens it, on two passages of US Code.

    Measured on 10 seeded passages of the industry documents it keeps about one pair per two
    passages; on these two (49 U.S.C. 60118(b) and 29 U.S.C. 660(b)) it kept pairs in every
    run. Each answer is the model's own words supported by its passage, or a passage sentence.
    """
    from feilun.app.workspace import opened
    from feilun.data.datasets import read_rows, resolve_dataset
    from feilun.data.passages import document_passages, support
    from feilun.models.packaged import SMOLLM2

    if SMOLLM2.locate() is None:
        pytest.skip(f"{SMOLLM2.name} is not installed ({SMOLLM2.install_hint})")
    docs = Path("../shared/data/industry/docs/en")
    sources = {
        "US-Code-Title49-Ch601-Pipeline-Safety.md": "the material the pipeline facility transports",
        "US-Code-Title29-Ch15-Occupational-Safety-and-Health-Act.md": "by filing a petition for",
    }
    invoke(env, "init")
    with opened(None, env) as ws:
        for name, phrase in sources.items():
            text = (docs / name).read_text(encoding="utf-8")
            [passage] = [p for p in document_passages([Document(text=text)]) if phrase in p.text]
            ws.catalog.save(Document(name=name, collection="us", text=passage.text))
    invoke(env, "data", "synth-qa", "us", "-d", "us-qa", "--per-chunk", "2", "--json")
    with opened(None, env) as ws:
        dataset = resolve_dataset(ws.catalog, "us-qa@1")
        rows = read_rows(ws.artifacts, dataset)
        texts = {d.id: d.text for d in ws.catalog.find("document")}
    assert rows, "the packaged model kept no grounded pair"
    for row in rows:
        meta, answer = row["meta"], row["messages"][-1]["content"]
        passage = texts[meta["document_id"]][slice(*meta["span"])]
        if meta["answer_mode"] == "extractive":
            assert texts[meta["document_id"]][slice(*meta["answer_span"])] == answer
        assert answer in passage or support(answer, passage) >= dataset.recipe["min_support"]
