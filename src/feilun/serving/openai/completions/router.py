"""`POST /v1/completions`."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from feilun.serving.openai.completions.protocol import CompletionRequest
from feilun.serving.openai.completions.service import create_completion

router = APIRouter()


@router.post("/v1/completions", response_model=None)
async def completions(body: CompletionRequest, request: Request) -> Response:
    """Create a text completion; the prompt is answered as one user message."""
    return await create_completion(request, body)
