"""A workspace with the tiny model registered as `tiny` and small datasets, copied per test."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from feilun.app.workspace import opened
from feilun.models.tiny import build_tiny_model
from feilun.training.context import Resources

GREETINGS = [
    ("Hello!", "Hello! How can I help you today?"),
    ("What is the capital of France?", "The capital of France is Paris."),
    ("What is two plus two?", "Two plus two is four."),
    ("法国的首都是哪里？", "法国的首都是巴黎。"),
    ("中国的首都是哪里？", "中国的首都是北京。"),
    ("Who answers the questions?", "The assistant answers questions and cites its sources."),
    ("What do people rate?", "People rate the answers and correct the wrong ones."),
    ("你好！", "你好！今天我能帮你什么？"),
]


def chat_rows() -> list[dict[str, Any]]:
    """Eight memorisable question/answer conversations, plus rows the filter must count."""
    rows: list[dict[str, Any]] = [
        {
            "id": f"g{i}",
            "messages": [
                {"role": "user", "content": q},
                {"role": "assistant", "content": a},
            ],
            "meta": {},
        }
        for i, (q, a) in enumerate(GREETINGS)
    ]
    rows.append({"id": "no-answer", "messages": [{"role": "user", "content": "hi"}], "meta": {}})
    rows.append({"id": "broken", "text": "not a conversation", "meta": {}})
    return rows


def preference_rows() -> list[dict[str, Any]]:
    """Prompt/chosen/rejected pairs: the chosen answer is the right one."""
    wrong = ["Goodbye.", "Berlin.", "Five.", "伦敦。"]
    return [
        {"id": f"p{i}", "prompt": q, "chosen": a, "rejected": wrong[i % len(wrong)], "meta": {}}
        for i, (q, a) in enumerate(GREETINGS)
    ]


def text_rows() -> list[dict[str, Any]]:
    """Raw domain text, as `feilun data clean` writes it."""
    from feilun.models.tiny import CORPUS

    return [
        {"id": f"t{i}", "text": p.strip(), "meta": {}}
        for i, p in enumerate(CORPUS.split("\n\n"))
        if p.strip()
    ]


@pytest.fixture(scope="session")
def tiny_base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama with a large init: its logits can move far enough to memorise answers."""
    model, tokenizer = build_tiny_model("llama", seed=0, init_std=0.3)
    folder = tmp_path_factory.mktemp("tiny-base") / "tiny"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def template_workspace(
    tmp_path_factory: pytest.TempPathFactory, tiny_base_dir: Path, make_workspace: Any
) -> Path:
    """Made once: `tiny` registered; datasets greetings, prefs and corpus saved."""
    datasets = {"greetings": chat_rows(), "prefs": preference_rows(), "corpus": text_rows()}
    return make_workspace(tmp_path_factory.mktemp("ws-template") / "ws", tiny_base_dir, datasets)


@pytest.fixture
def workspace(template_workspace: Path, tmp_path: Path) -> Path:
    """A fresh copy of the template workspace."""
    path = tmp_path / "ws"
    shutil.copytree(template_workspace, path)
    return path


@pytest.fixture
def env(workspace: Path) -> dict[str, str]:
    """Environment pointing the CLI at the test's workspace."""
    return {"FEILUN_WORKSPACE": str(workspace)}


@pytest.fixture
def resources(workspace: Path) -> Any:
    """Catalog, artifacts, registry and runs folder of the test's workspace."""
    with opened(workspace, env={}) as ws:
        yield Resources(ws.catalog, ws.artifacts, ws.models, ws.path / "runs")
