"""The fast lane: the hot routes run past FastAPI's routing with the same contract."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from tests.serving.conftest import KEY

from feilun.serving.fast_lane import lane_for

BODY = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
LANE_PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")


def _post(server: Any, content_type: str | None, path: str = "/v1/chat/completions") -> Any:
    headers = {"authorization": f"Bearer {KEY}"}
    if content_type is not None:
        headers["content-type"] = content_type
    return httpx.post(
        f"{server.url}{path}",
        content=json.dumps(BODY),
        headers=headers,
    )


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "application/vnd.x+json"]
)
def test_json_media_types_are_served(server: Any, content_type: str) -> None:
    response = _post(server, content_type)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["role"] == "assistant"
    assert response.headers["x-feilun-trace-id"].startswith("trc")


@pytest.mark.parametrize(
    ("content_type", "named"), [("text/plain", "'text/plain'"), (None, "no Content-Type")]
)
def test_a_body_not_sent_as_json_is_refused_naming_the_fix(
    server: Any, content_type: str | None, named: str
) -> None:
    response = _post(server, content_type)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_content_type"
    assert named in error["message"]
    assert "Content-Type: application/json" in error["message"]


def test_other_methods_and_the_schema_still_go_through_fastapi(server: Any) -> None:
    response = httpx.get(f"{server.url}/v1/chat/completions")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
    schema = httpx.get(f"{server.url}/openapi.json").json()
    for path in LANE_PATHS:
        assert "post" in schema["paths"][path]
    body_schema = schema["paths"]["/v1/chat/completions"]["post"]["requestBody"]
    assert "ChatCompletionRequest" in str(body_schema)


def test_lane_requests_are_counted_under_their_route(server: Any) -> None:
    def count() -> float:
        for line in httpx.get(f"{server.url}/metrics").text.splitlines():
            if line.startswith("feilun_http_requests_total{") and (
                'route="/v1/completions",status="400"' in line
            ):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    before = count()
    _post(server, "text/plain", "/v1/completions")
    assert count() == before + 1


def test_the_lane_needs_a_body_model_and_the_request() -> None:
    async def no_body(request: Request) -> Any:
        return None

    with pytest.raises(TypeError, match="/x: the fast lane needs"):
        lane_for("/x", no_body)
