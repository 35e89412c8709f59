"""`GET /v1/models`: the chat models, aliases and embedding model the calling key may use."""

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
    gateway = gateway_of(request)
    names = await anyio.to_thread.run_sync(gateway.model_names)
    if gateway.embedder is not None and gateway.embedder_name:
        names.append(gateway.embedder_name)
    if principal.models is not None:
        allowed = set(principal.models)
        names = [n for n in names if n in allowed]
    data = [{"id": n, "object": "model", "created": 0, "owned_by": "feilun"} for n in names]
    return {"object": "list", "data": data}
