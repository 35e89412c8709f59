"""The error table and the small pure helpers of the HTTP layer."""

from __future__ import annotations

import pytest

from feilun.core.errors import (
    BackendUnavailable,
    ConfigError,
    FeilunError,
    InputTooLong,
    NotFound,
    PolicyViolation,
    QuotaExceeded,
)
from feilun.serving.errors import (
    AuthenticationFailed,
    PermissionDenied,
    error_payload,
    feilun_error_response,
    field_path,
    retry_after_s,
)
from feilun.serving.openai.metering import adapter_of, usage_source_of


@pytest.mark.parametrize(
    ("error", "status", "kind"),
    [
        (ConfigError("x"), 400, "invalid_request_error"),
        (NotFound("x"), 404, "not_found_error"),
        (AuthenticationFailed("x"), 401, "authentication_error"),
        (PermissionDenied("x"), 403, "permission_error"),
        (QuotaExceeded("x"), 429, "rate_limit_error"),
        (InputTooLong("max_tokens 9 > context 4"), 400, "invalid_request_error"),
        (PolicyViolation("x"), 400, "invalid_request_error"),
        (BackendUnavailable("x"), 503, "api_error"),
        (FeilunError("x"), 400, "invalid_request_error"),
    ],
)
def test_error_table(error: FeilunError, status: int, kind: str) -> None:
    response = feilun_error_response(error, trace_id="trc_1")
    assert response.status_code == status
    assert error_payload(error)["error"]["type"] == kind
    assert response.headers["x-feilun-trace-id"] == "trc_1"
    assert ("retry-after" in response.headers) == (status == 429)


def test_upstream_failures_are_502_and_context_errors_name_their_param() -> None:
    error = BackendUnavailable("upstream down")
    error.is_upstream = True  # type: ignore[attr-defined]
    assert feilun_error_response(error).status_code == 502
    assert error_payload(InputTooLong("prompt 9 > context 4"))["error"]["param"] == "messages"
    assert error_payload(InputTooLong("max_tokens 9 > context"))["error"]["param"] == "max_tokens"


def test_unexpected_errors_hide_their_message() -> None:
    payload = error_payload(RuntimeError("password=hunter2"))["error"]
    assert "hunter2" not in payload["message"]
    assert payload["type"] == "api_error"


def test_retry_after_is_whole_seconds_at_least_one() -> None:
    error = QuotaExceeded("x")
    assert retry_after_s(error) == 1  # attribute missing
    error.retry_after_s = 0.2  # type: ignore[attr-defined]
    assert retry_after_s(error) == 1
    error.retry_after_s = 30.5  # type: ignore[attr-defined]
    assert retry_after_s(error) == 31
    error.retry_after_s = float("nan")  # type: ignore[attr-defined]
    assert retry_after_s(error) == 1


def test_field_paths_drop_union_tags() -> None:
    assert field_path(("body", "messages", 0, "content")) == "messages[0].content"
    assert field_path(("body", "input", "str")) == "input"
    assert field_path(("body", "input", "list[str]", 2)) == "input[2]"
    assert field_path(("body", "messages", 0, "content", "list[TextPart]", 1, "type")) == (
        "messages[0].content[1].type"
    )
    assert field_path(("body",)) == ""


def test_usage_source_and_adapter() -> None:
    from feilun.models.runtimes.openai_upstream import UpstreamChatModel

    upstream = UpstreamChatModel("http://127.0.0.1:1/v1", "m", api_key="k", name="m")
    assert usage_source_of(upstream) == "upstream"
    assert usage_source_of(object()) == "tokenizer"  # a local model counts with its tokenizer
    assert adapter_of("smollm2@1:handbook-v3@2") == "handbook-v3@2"
    assert adapter_of("smollm2@1") is None
