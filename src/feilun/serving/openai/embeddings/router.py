"""`POST /v1/embeddings`."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from feilun.serving.openai.embeddings.protocol import EmbeddingRequest
from feilun.serving.openai.embeddings.service import create_embeddings

router = APIRouter()


@router.post("/v1/embeddings", response_model=None)
async def embeddings(body: EmbeddingRequest, request: Request) -> Response:
    """Create embeddings of one text or a list of texts."""
    return await create_embeddings(request, body)
