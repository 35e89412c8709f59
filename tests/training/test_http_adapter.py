"""A trained adapter served by the gateway by name: the official `openai` client asks for
`base:adapter` over HTTP and gets the greedy text in-process generation gives.

A real run on the tiny model, then `build_server_app` over the same workspace under uvicorn
(the serving tests' harness, reduced to what this needs), with a real tenant and API key.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import openai
import pytest
from typer.testing import CliRunner

from feilun.app.workspace import opened
from feilun.core.protocols import GenerationParams
from feilun.core.records import Message
from feilun.models.registry import ModelRegistry
from feilun.training.context import Resources
from feilun.training.launch import execute_run
from feilun.training.runs import start_run

RECIPE = Path(__file__).parents[2] / "recipes" / "train" / "tiny_sft_lora.yaml"
QUESTIONS = ["What is the capital of France?", "法国的首都是哪里？", "What is two plus two?"]
MAX_TOKENS = 24


def feilun(workspace: Path, *args: str) -> str:
    from feilun.cli.main import app

    result = CliRunner().invoke(app, [*args, "--workspace", str(workspace)])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def trained(workspace: Path) -> str:
    """Run `r1` (tiny_sft_lora) to the end; the reference it registered."""
    with opened(workspace, env={}) as ws:
        resources = Resources(ws.catalog, ws.artifacts, ws.models, ws.path / "runs")
        manifest = execute_run(resources, start_run(resources, RECIPE, [], "r1"))
    assert manifest is not None
    return str(manifest["result"])


def test_openai_client_gets_the_adapters_greedy_text(
    workspace: Path, trained: str, serve_app: Callable[[Any], AbstractContextManager[str]]
) -> None:
    from feilun.app.serve import build_server_app

    assert trained == "tiny:greetings-sft-lora@1"
    feilun(workspace, "tenants", "create", "acme")
    secret = json.loads(feilun(workspace, "keys", "create", "--tenant", "acme", "--json"))["key"]
    with opened(workspace, env={}) as ws:
        # in-process: its own registry, so the weights are loaded apart from the server's
        local = ModelRegistry(ws.catalog, ws.settings.resolved_model_cache).open(
            "tiny:greetings-sft-lora"
        )
        params = GenerationParams(max_tokens=MAX_TOKENS, temperature=0.0)
        expected = [local.chat([Message(role="user", content=q)], params).text for q in QUESTIONS]
        with serve_app(build_server_app(ws)) as url:
            client = openai.OpenAI(base_url=f"{url}/v1", api_key=secret, max_retries=0)
            responses = [
                client.chat.completions.create(
                    model="tiny:greetings-sft-lora",
                    messages=[{"role": "user", "content": q}],
                    max_tokens=MAX_TOKENS,
                    temperature=0,
                )
                for q in QUESTIONS
            ]
    assert [r.choices[0].message.content for r in responses] == expected
    assert expected[:2] == ["The capital of France is Paris.", "法国的首都是巴黎。"]  # trained
    assert "greetings-sft-lora" in responses[0].model
