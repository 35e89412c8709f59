"""RAG over HTTP with the official `openai` client: `rag:KB` models, the `feilun.kb` field,
citations in the response and at the end of a stream, and the errors of bad requests.

A real workspace: a tiny model registered by path, two regulations ingested, a BM25
knowledge base built from them, served by `build_server_app` under uvicorn.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import openai
import pytest
from typer.testing import CliRunner

DOCS = Path("../shared/data/industry/docs")
OSHA = DOCS / "en" / "US-Code-Title29-Ch15-Occupational-Safety-and-Health-Act.md"
GAS = DOCS / "zh" / "城镇燃气管理条例(2016-02-06).md"
QUESTION = "What records must an employer keep under the OSH Act?"


def feilun(workspace: Path, *args: str) -> str:
    from feilun.cli.main import app

    result = CliRunner().invoke(app, [*args, "--workspace", str(workspace)])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def client(
    tmp_path_factory: pytest.TempPathFactory,
    serve_app: Callable[[Any], AbstractContextManager[str]],
) -> Iterator[openai.OpenAI]:
    from feilun.app.serve import build_server_app
    from feilun.app.workspace import opened
    from feilun.models.tiny import build_tiny_model

    root = tmp_path_factory.mktemp("rag")
    workspace = root / "ws"
    model, tokenizer = build_tiny_model("llama", context_length=4096)
    model.save_pretrained(root / "tiny")
    tokenizer.save_pretrained(root / "tiny")
    feilun(workspace, "init")
    feilun(workspace, "models", "add", "tiny", "--path", str(root / "tiny"))
    feilun(workspace, "data", "ingest", str(OSHA), str(GAS), "--collection", "laws")
    feilun(workspace, "kb", "create", "laws", "--from", "laws", "--embedder", "none")
    feilun(workspace, "tenants", "create", "acme")
    secret = json.loads(feilun(workspace, "keys", "create", "--tenant", "acme", "--json"))["key"]
    with opened(workspace) as ws, serve_app(build_server_app(ws)) as url:
        yield openai.OpenAI(base_url=f"{url}/v1", api_key=secret, max_retries=0)


def _feilun(response: Any) -> dict[str, Any]:
    extra: dict[str, Any] = response.model_extra or {}
    return extra["feilun"]


def test_a_rag_model_answers_with_citations(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model="rag:laws:tiny", messages=[{"role": "user", "content": QUESTION}], max_tokens=16
    )
    fields = _feilun(response)
    assert fields["answered"] is True
    assert fields["model_ref"].endswith("+kb:laws@1")
    assert isinstance(fields["citations"], list) and "unsupported_sentences" in fields
    for citation in fields["citations"]:
        assert citation["title"] and citation["chunk_id"] and citation["quote"]
    assert "rag:laws" in [m.id for m in client.models.list()]


def test_the_kb_field_works_on_any_model_and_streams_end_with_grounding(
    client: openai.OpenAI,
) -> None:
    chunks = list(
        client.chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": QUESTION}],
            max_tokens=16,
            stream=True,
            extra_body={"feilun": {"kb": "laws"}},
        )
    )
    last = [c for c in chunks if c.choices and c.choices[0].finish_reason][-1]
    assert _feilun(last)["answered"] is True
    assert all("citations" not in (c.model_extra or {}).get("feilun", {}) for c in chunks[:-2])


def test_off_topic_questions_are_not_answered(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model="rag:laws:tiny",
        messages=[{"role": "user", "content": "法国的首都是哪里？"}],
        max_tokens=16,
    )
    assert response.choices[0].message.content == "我不知道：知识库中没有与这个问题相关的内容。"
    assert _feilun(response)["answered"] is False
    assert response.usage is not None and response.usage.completion_tokens == 0


def test_bad_rag_requests_get_openai_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError, match="knowledge bases: laws"):
        client.chat.completions.create(
            model="rag:nope:tiny", messages=[{"role": "user", "content": QUESTION}]
        )
    with pytest.raises(openai.BadRequestError, match="query is empty"):
        client.chat.completions.create(
            model="rag:laws:tiny", messages=[{"role": "user", "content": "   "}]
        )
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": QUESTION}],
            extra_body={"feilun": {"kb": 3}},
        )
    assert caught.value.body["param"] == "feilun.kb"  # type: ignore[index]
