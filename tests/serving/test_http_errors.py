"""Every error comes back OpenAI-shaped, so the official client raises its typed exceptions."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

PROMPT = [{"role": "user", "content": "Hello!"}]


def _error(exc: openai.APIStatusError) -> dict[str, Any]:
    body = exc.body
    assert isinstance(body, dict)
    assert set(body) >= {"message", "type", "param", "code"}  # the client unwraps "error"
    return body


def _raw(server: Any, method: str, path: str, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {server.keys['alpha']}"} | kwargs.pop("headers", {})
    return httpx.request(method, f"{server.url}{path}", headers=headers, **kwargs)


def _shape(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert list(body) == ["error"]
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return dict(body["error"])


@pytest.mark.parametrize("key", ["sk-unknown", "revoked", None])
def test_bad_keys_are_401(server: Any, key: str | None) -> None:
    client = server.client(server.keys.get(key or "", key or "placeholder"))
    if key is None:
        client = server.client(default_headers={"Authorization": ""})
    with pytest.raises(openai.AuthenticationError) as caught:
        client.chat.completions.create(model="tiny", messages=PROMPT, max_tokens=2)
    assert _error(caught.value)["type"] == "authentication_error"
    assert "sk-" not in _error(caught.value)["message"]  # keys are never echoed


def test_model_not_allowed_is_403(server: Any) -> None:
    with pytest.raises(openai.PermissionDeniedError) as caught:
        server.client(server.keys["restricted"]).chat.completions.create(
            model="tiny", messages=PROMPT, max_tokens=2
        )
    assert _error(caught.value)["type"] == "permission_error"


def test_unknown_model_is_404_listing_available(server: Any) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        server.client().chat.completions.create(model="nope", messages=PROMPT, max_tokens=2)
    assert "tiny" in _error(caught.value)["message"]


def test_over_quota_is_429_with_retry_after(server: Any) -> None:
    before = len(server.ledger.outcomes)
    with pytest.raises(openai.RateLimitError) as caught:
        server.client(server.keys["broke"]).chat.completions.create(
            model="tiny", messages=PROMPT, max_tokens=2
        )
    assert caught.value.response.headers["retry-after"] == "8"  # ceil(7.2)
    assert _error(caught.value)["type"] == "rate_limit_error"
    assert len(server.ledger.outcomes) == before  # refused before generation: nothing billed


def test_max_tokens_over_context_is_400_naming_the_limit(server: Any) -> None:
    for field in ("max_tokens", "max_completion_tokens"):
        with pytest.raises(openai.BadRequestError) as caught:
            server.client().chat.completions.create(
                model="tiny", messages=PROMPT, **{field: 100_000}
            )
        error = _error(caught.value)
        assert error["param"] == field
        assert "512" in error["message"]
        assert error["code"] == "context_length_exceeded"


def test_prompt_over_context_is_400_on_messages(server: Any) -> None:
    long = [{"role": "user", "content": "flywheel " * 600}]
    with pytest.raises(openai.BadRequestError) as caught:
        server.client().chat.completions.create(model="tiny", messages=long, max_tokens=2)
    assert _error(caught.value)["param"] == "messages"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"temperature": 3}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"n": 9}, "n"),
        ({"n": "2"}, "n"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stream": "yes"}, "stream"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"messages": []}, "messages"),
        ({"model": None}, "model"),
    ],
)
def test_bad_parameters_are_400_with_param(server: Any, extra: dict[str, Any], param: str) -> None:
    body = {"model": "tiny", "messages": PROMPT, "max_tokens": 2} | extra
    with pytest.raises(openai.BadRequestError) as caught:
        server.client().chat.completions.create(**body)
    error = _error(caught.value)
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"


def test_unknown_fields_are_ignored(server: Any) -> None:
    reply = server.client().chat.completions.create(
        model="tiny",
        messages=PROMPT,
        max_tokens=2,
        extra_body={"frobnicate": 1},
        presence_penalty=0.5,
    )
    assert reply.choices


def test_malformed_json_is_400(server: Any) -> None:
    response = _raw(
        server,
        "POST",
        "/v1/chat/completions",
        content=b'{"model": "tiny",',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert _shape(response)["code"] == "invalid_json"
    assert response.headers["x-feilun-trace-id"].startswith("trc_")


def test_unknown_route_is_404_and_wrong_method_405(server: Any) -> None:
    missing = _raw(server, "GET", "/v1/nothing-here")
    assert missing.status_code == 404
    assert _shape(missing)["type"] == "invalid_request_error"
    wrong = _raw(server, "GET", "/v1/chat/completions")
    assert wrong.status_code == 405
    assert _shape(wrong)["code"] == "method_not_allowed"


def test_body_over_the_limit_is_413(server: Any) -> None:
    huge = [{"role": "user", "content": "x" * (server.max_body_bytes + 10)}]
    with pytest.raises(openai.APIStatusError) as caught:
        server.client().chat.completions.create(model="tiny", messages=huge, max_tokens=2)
    assert caught.value.status_code == 413
    assert _error(caught.value)["code"] == "payload_too_large"
    assert caught.value.response.headers["x-feilun-trace-id"].startswith("trc_")


def test_chunked_body_over_the_limit_is_413(server: Any) -> None:
    """A body without Content-Length is counted while it is read (ASGI transport, in-process)."""
    import anyio

    anyio.run(_post_chunked, server)


async def _post_chunked(server: Any) -> None:
    from feilun.serving.app import build_app

    app = build_app(server.gateway)
    piece = json.dumps({"model": "tiny", "messages": PROMPT, "pad": "x" * 4096}).encode()

    async def chunks() -> Any:
        for _ in range(server.max_body_bytes // len(piece) + 2):
            yield piece

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post(
            "/v1/chat/completions",
            content=chunks(),
            headers={"Authorization": f"Bearer {server.keys['alpha']}"},
        )
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert response.status_code == 413
    assert _shape(response)["code"] == "payload_too_large"


def test_unexpected_errors_are_500_without_internals(server: Any, monkeypatch: Any) -> None:
    def broken(name: str) -> Any:
        raise RuntimeError("secret internal detail /etc/passwd")

    monkeypatch.setattr(server.gateway, "open_model", broken)
    with pytest.raises(openai.InternalServerError) as caught:
        server.client().chat.completions.create(model="tiny", messages=PROMPT, max_tokens=2)
    error = _error(caught.value)
    assert "secret" not in error["message"]
    assert error["type"] == "api_error"


def test_embeddings_refuse_token_arrays(server: Any) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        server.client().embeddings.create(model="all-minilm-l6-v2", input=[[1, 2, 3]])
    error = _error(caught.value)
    assert error["param"] == "input"
    assert "token id arrays" in error["message"]


def test_every_v1_error_after_admission_carries_its_trace(server: Any) -> None:
    response = _raw(
        server,
        "POST",
        "/v1/chat/completions",
        json={"model": "tiny", "messages": PROMPT, "max_tokens": 100_000},
    )
    assert response.status_code == 400
    assert response.headers["x-feilun-trace-id"].startswith("trc_")
