"""OpenAI-shaped errors: every failure leaves as `{"error": {message, type, param, code}}`.

`FeilunError` subclasses map to a status and an OpenAI error type here, in one table, so
the official client raises its typed exceptions. Unexpected exceptions become a 500 whose
message holds no internals; the traceback goes to the log.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from feilun.core.errors import (
    BackendUnavailable,
    ConfigError,
    FeilunError,
    InputTooLong,
    NotFound,
    PolicyViolation,
    QuotaExceeded,
)

logger = logging.getLogger(__name__)

TRACE_HEADER = "x-feilun-trace-id"


class AuthenticationFailed(FeilunError):
    """The API key is missing, unknown, revoked or expired (HTTP 401)."""


class PermissionDenied(FeilunError):
    """The API key may not use this model or resource (HTTP 403)."""


class PayloadTooLarge(FeilunError):
    """The request body is over the server's limit (HTTP 413)."""


class ContentBlocked(PolicyViolation):
    """The tenant's content policy blocks the request (HTTP 400, `content_policy_violation`)."""


@dataclass(frozen=True)
class ErrorKind:
    """How one error class is reported: HTTP status, OpenAI `type` and `code`."""

    status: int
    type: str
    code: str | None


# Most specific first: the first isinstance match wins.
ERROR_KINDS: tuple[tuple[type[FeilunError], ErrorKind], ...] = (
    (AuthenticationFailed, ErrorKind(401, "authentication_error", "invalid_api_key")),
    (PermissionDenied, ErrorKind(403, "permission_error", "model_not_allowed")),
    (NotFound, ErrorKind(404, "not_found_error", "not_found")),
    (QuotaExceeded, ErrorKind(429, "rate_limit_error", "rate_limit_exceeded")),
    (PayloadTooLarge, ErrorKind(413, "invalid_request_error", "payload_too_large")),
    (InputTooLong, ErrorKind(400, "invalid_request_error", "context_length_exceeded")),
    (ContentBlocked, ErrorKind(400, "invalid_request_error", "content_policy_violation")),
    (PolicyViolation, ErrorKind(400, "invalid_request_error", "policy_violation")),
    (ConfigError, ErrorKind(400, "invalid_request_error", "invalid_value")),
    (BackendUnavailable, ErrorKind(503, "api_error", "backend_unavailable")),
)
INTERNAL = ErrorKind(500, "api_error", "internal_error")
INTERNAL_MESSAGE = "The server had an internal error; it has been logged."


def kind_of(error: FeilunError) -> ErrorKind:
    """The status, type and code a Feilun error is reported with (400 for unlisted ones)."""
    for cls, kind in ERROR_KINDS:
        if isinstance(error, cls):
            return kind
    return ErrorKind(400, "invalid_request_error", None)


def error_body(
    message: str, type_: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """OpenAI's error object."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def error_response(
    status: int,
    message: str,
    type_: str,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A JSON response carrying OpenAI's error object."""
    return JSONResponse(error_body(message, type_, param, code), status, headers=headers)


def retry_after_s(error: BaseException) -> int:
    """Whole seconds a client should wait after a 429 (at least 1)."""
    value = getattr(error, "retry_after_s", None)
    if not isinstance(value, int | float) or not math.isfinite(value):
        return 1
    return max(1, math.ceil(value))


def error_payload(error: BaseException) -> dict[str, Any]:
    """The OpenAI error object for any exception; internals of unexpected ones stay hidden."""
    if isinstance(error, FeilunError):
        kind = kind_of(error)
        return error_body(str(error), kind.type, param_of(error), kind.code)
    return error_body(INTERNAL_MESSAGE, INTERNAL.type, None, INTERNAL.code)


def feilun_error_response(error: FeilunError, trace_id: str | None = None) -> JSONResponse:
    """The response for an expected failure; adds Retry-After to 429s and the trace header."""
    kind = kind_of(error)
    status = kind.status
    if isinstance(error, BackendUnavailable) and getattr(error, "is_upstream", False):
        status = 502
    headers: dict[str, str] = {}
    if kind.status == 429:
        headers["Retry-After"] = str(retry_after_s(error))
    if trace_id:
        headers[TRACE_HEADER] = trace_id
    return JSONResponse(error_payload(error), status, headers=headers)


def param_of(error: FeilunError) -> str | None:
    """The request field an error is about: its `param` attribute, else a guess for 400s."""
    param = getattr(error, "param", None)
    if isinstance(param, str):
        return param
    if isinstance(error, InputTooLong):
        return "max_tokens" if "max_tokens" in error.message else "messages"
    return None


_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "bytes", "none", "list", "dict", "tuple"})


def _is_type_tag(part: str) -> bool:
    """Whether a pydantic location part names a union member (`str`, `list[str]`) not a field."""
    return (
        part in _TYPE_TAGS
        or not part.replace("_", "").isalnum()
        or not part.islower()
        or part[:1].isdigit()
    )


def field_path(loc: Sequence[int | str]) -> str:
    """A pydantic error location as OpenAI writes params: `messages[0].content`."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not _is_type_tag(part):
            out += f".{part}" if out else part
    return out


def _pick(errors: list[dict[str, Any]]) -> dict[str, Any]:
    """The error to report: for a union, the member whose type matched (not a type mismatch)."""
    first = errors[0]
    param = field_path(first.get("loc", ()))
    same = [e for e in errors if field_path(e.get("loc", ())) == param]
    return next((e for e in same if not str(e.get("type", "")).endswith("_type")), first)


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [dict(e) for e in exc.errors()]
    if not errors:
        return error_response(400, "Invalid request.", "invalid_request_error", None, None)
    error = _pick(errors)
    if error.get("type") == "json_invalid":
        message = f"We could not parse the JSON body of your request: {error.get('msg', '')}."
        return error_response(400, message, "invalid_request_error", None, "invalid_json")
    param = field_path(error.get("loc", ()))
    where = f"'{param}'" if param else "the request body"
    message = f"Invalid value for {where}: {error.get('msg', 'invalid')}."
    return error_response(400, message, "invalid_request_error", param or None, "invalid_value")


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        message = f"Unknown route {request.method} {request.url.path}."
        return error_response(404, message, "invalid_request_error", None, "unknown_url")
    if exc.status_code == 405:
        message = f"Method {request.method} is not allowed on {request.url.path}."
        headers = dict(exc.headers or {})
        return error_response(
            405, message, "invalid_request_error", None, "method_not_allowed", headers
        )
    kind = "invalid_request_error" if exc.status_code < 500 else "api_error"
    return error_response(exc.status_code, str(exc.detail), kind, None, None)


async def _on_feilun(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, FeilunError)
    return feilun_error_response(exc, getattr(request.state, "trace_id", None))


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    trace_id = getattr(request.state, "trace_id", None)
    headers = {TRACE_HEADER: trace_id} if trace_id else None
    return JSONResponse(error_payload(exc), 500, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Make every error the app can produce OpenAI-shaped."""
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(FeilunError, _on_feilun)
    app.add_exception_handler(Exception, _on_unexpected)
