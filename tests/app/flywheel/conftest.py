"""A workspace with the tiny model as `tiny` and dataset `facts` (tiny-qa.jsonl as chats)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from feilun.app.workspace import Workspace, opened

RECIPES = Path(__file__).resolve().parents[3] / "recipes" / "flywheel"
TINY = RECIPES / "tiny.yaml"


def fact_rows(corrupt: bool = False) -> list[dict[str, Any]]:
    """The suite's QA items as the chats the QA task prompts with; `corrupt`: wrong answers."""
    from feilun.evaluation.items import load_qa
    from feilun.evaluation.qa import render_messages

    items = load_qa(RECIPES / "tiny-qa.jsonl").items
    answers = [item.answers[0] for item in items]
    if corrupt:  # every question gets the next one's answer
        answers = answers[1:] + answers[:1]
    return [
        {
            "id": item.id,
            "messages": [m.model_dump() for m in render_messages(item)]
            + [{"role": "assistant", "content": answer}],
            "meta": {},
        }
        for item, answer in zip(items, answers, strict=True)
    ]


@pytest.fixture(scope="session")
def flywheel_template(tmp_path_factory: pytest.TempPathFactory, make_workspace: Any) -> Path:
    """Made once: `tiny` (a large init, so it can memorise) and dataset `facts`."""
    from feilun.models.tiny import build_tiny_model

    model, tokenizer = build_tiny_model("llama", seed=0, init_std=0.3)
    folder = tmp_path_factory.mktemp("fw-tiny") / "tiny"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    path = tmp_path_factory.mktemp("fw-template") / "ws"
    return make_workspace(path, folder, {"facts": fact_rows()})


@pytest.fixture
def workspace_path(flywheel_template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the template workspace."""
    path = tmp_path / "ws"
    shutil.copytree(flywheel_template, path)
    return path


@pytest.fixture
def ws(workspace_path: Path) -> Iterator[Workspace]:
    """The test's workspace, open."""
    with opened(workspace_path, env={}) as workspace:
        yield workspace


def tiny_config(folder: Path, **changes: Any) -> Path:
    """recipes/flywheel/tiny.yaml with `changes` (top-level sections), written to `folder`.

    Its relative paths are made absolute, so the copy reads the same files.
    """
    import yaml

    config = yaml.safe_load(TINY.read_text(encoding="utf-8"))
    config["train"]["recipe"] = str(RECIPES / config["train"]["recipe"])
    config["evaluate"]["suite"] = str(RECIPES / config["evaluate"]["suite"])
    config["gate"]["rules"] = str(RECIPES / config["gate"]["rules"])
    config.update(changes)
    path = folder / "turn.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path
