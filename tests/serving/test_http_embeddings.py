"""Embeddings through the official client equal the embedder called directly."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

TEXTS = ["The capital of France is Paris.", "燃气管道的安全规程", "How do I test a regulator?"]


def test_embeddings_match_the_embedder(server: Any) -> None:
    raw = server.client().embeddings.with_raw_response.create(model="all-minilm-l6-v2", input=TEXTS)
    reply = raw.parse()  # the client asks for base64 and decodes it
    direct = server.embedder.embed(TEXTS)
    assert [d.index for d in reply.data] == [0, 1, 2]
    for got, want in zip(reply.data, direct, strict=True):
        assert len(got.embedding) == 384
        assert got.embedding == pytest.approx(want, abs=1e-6)
    tokens = server.embedder.count_tokens(TEXTS)
    assert reply.usage.prompt_tokens == reply.usage.total_tokens == tokens
    outcome = server.ledger.outcome(raw.headers["x-feilun-trace-id"])
    assert (outcome.endpoint, outcome.prompt_tokens, outcome.status) == ("embeddings", tokens, "ok")


def test_float_format_and_single_string(server: Any) -> None:
    response = httpx.post(
        f"{server.url}/v1/embeddings",
        json={"model": "all-minilm-l6-v2", "input": TEXTS[0], "encoding_format": "float"},
        headers={"Authorization": f"Bearer {server.keys['alpha']}"},
    )
    assert response.status_code == 200
    vector = response.json()["data"][0]["embedding"]
    assert vector == pytest.approx(server.embedder.embed([TEXTS[0]])[0], abs=1e-6)


def test_unknown_embedding_model_is_404(server: Any) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        server.client().embeddings.create(model="tiny", input="hello")
    assert "all-minilm-l6-v2" in caught.value.body["message"]


@pytest.mark.parametrize("bad", [[], [""], "", [1, 2]])
def test_bad_inputs_are_400(server: Any, bad: Any) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        server.client().embeddings.create(model="all-minilm-l6-v2", input=bad)
    assert caught.value.body["param"] == "input"


def test_wrong_dimensions_are_400(server: Any) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        server.client().embeddings.create(model="all-minilm-l6-v2", input="hi", dimensions=128)
    assert caught.value.body["param"] == "dimensions"
