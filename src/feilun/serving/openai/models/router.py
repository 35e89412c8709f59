"""`GET /v1/models`: the model names and aliases the calling key may use."""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter, Request

from feilun.serving.openai.metering import authenticate, gateway_of

router = APIRouter()


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    """OpenAI's model list, filtered by the key's allow-list."""
    principal = await authenticate(request)
    names = await anyio.to_thread.run_sync(gateway_of(request).model_names)
    if principal.models is not None:
        allowed = set(principal.models)
        names = [n for n in names if n in allowed]
    data = [{"id": n, "object": "model", "created": 0, "owned_by": "feilun"} for n in names]
    return {"object": "list", "data": data}
