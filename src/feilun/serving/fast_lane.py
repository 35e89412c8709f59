"""A fast lane for the hottest routes: the endpoint runs straight from ASGI.

FastAPI's routing walks every route, solves dependencies, parses the JSON and then validates
it, and wraps the call in four layers of exception and exit-stack handling: about a sixth of
the gateway's Python samples on a relayed chat completion (py-spy). The lane matches the
method and path exactly, validates the raw body with the route's pydantic model in one pass,
calls the same endpoint function, and renders errors with the app's own exception handlers.
The routes stay registered with FastAPI, so the OpenAPI schema and every other request are
unchanged.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pydantic
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from feilun.serving.errors import error_response

Endpoint = Callable[..., Awaitable[Response]]  # async (body: Model, request: Request)


@dataclass(frozen=True)
class Lane:
    """One route served by the lane: its path (the metrics' route label), body model, endpoint."""

    path: str
    body_model: type[pydantic.BaseModel]
    endpoint: Endpoint


def lane_for(path: str, endpoint: Endpoint) -> Lane:
    """The lane of an endpoint that takes `(body: Model, request: Request)`."""
    kinds = [p.annotation for p in inspect.signature(endpoint, eval_str=True).parameters.values()]
    if len(kinds) != 2 or kinds[1] is not Request or not issubclass(kinds[0], pydantic.BaseModel):
        raise TypeError(f"{path}: the fast lane needs an endpoint (body: Model, request: Request)")
    return Lane(path, kinds[0], endpoint)


class FastLane:
    """Serve the given routes from ASGI directly; pass every other request on to `app`."""

    def __init__(self, app: ASGIApp, fastapi_app: FastAPI, endpoints: dict[str, Endpoint]) -> None:
        self.app = app
        self.fastapi_app = fastapi_app
        self.lanes = {path: lane_for(path, endpoint) for path, endpoint in endpoints.items()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run a matching POST in the lane; anything else goes the usual way."""
        lane = self.lanes.get(scope["path"]) if scope["type"] == "http" else None
        if lane is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        scope["app"] = self.fastapi_app
        scope["route"] = lane  # what MetricsMiddleware reads: the route's `path`
        request = Request(scope, receive)
        if not _is_json(request.headers.get("content-type")):
            await _not_json(request)(scope, receive, send)
            return
        try:
            body = lane.body_model.model_validate_json(await request.body())
        except pydantic.ValidationError as e:
            errors = [{**error, "loc": ("body", *error["loc"])} for error in e.errors()]
            response = await self._handle(request, RequestValidationError(errors))
        else:
            try:
                response = await lane.endpoint(body, request)
            except Exception as e:
                response = await self._handle(request, e)
        await response(scope, receive, send)

    async def _handle(self, request: Request, error: Exception) -> Response:
        """The response of the app's own handler for `error` (nearest class first)."""
        handlers = self.fastapi_app.exception_handlers
        for kind in type(error).__mro__:
            handler = handlers.get(kind)
            if handler is not None:
                response = handler(request, error)
                return await response if inspect.isawaitable(response) else response
        raise error


def _is_json(content_type: str | None) -> bool:
    """`application/json`, or any `+json` type, with or without parameters."""
    if content_type is None:
        return False
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _not_json(request: Request) -> Response:
    given = request.headers.get("content-type")
    what = f"Content-Type {given!r}" if given else "no Content-Type"
    message = (
        f"The request body must be JSON, but the request has {what}: send it with "
        "'Content-Type: application/json'."
    )
    return error_response(400, message, "invalid_request_error", None, "invalid_content_type")
