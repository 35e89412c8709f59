"""`POST /v1/chat/completions`."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from feilun.serving.openai.chat_completions.protocol import ChatCompletionRequest
from feilun.serving.openai.chat_completions.service import create_chat_completion

router = APIRouter()


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
    """Create a chat completion (OpenAI-compatible; `stream: true` for server-sent events)."""
    return await create_chat_completion(request, body)
