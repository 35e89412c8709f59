"""Chat completions: run the admitted model and write OpenAI's response or chunk stream.

The id is `chatcmpl-<trace id>`; Feilun's own fields live under `feilun` so stock clients
ignore them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from fastapi.responses import Response
from starlette.requests import Request

from feilun.core.protocols import Completion, Delta, Grounding, Usage
from feilun.serving.openai.chat_completions.protocol import ChatCompletionRequest
from feilun.serving.openai.generation import (
    Generation,
    GenerationRequest,
    open_generation,
    respond,
)

DEFAULT_TEMPERATURE = 1.0  # OpenAI's default
DEFAULT_TOP_P = 1.0


def usage_body(usage: Usage) -> dict[str, int]:
    """OpenAI's usage object."""
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def feilun_fields(gen: Generation) -> dict[str, Any]:
    """Our extension fields, namespaced under `feilun`."""
    return {"trace_id": gen.trace_id, "model_ref": gen.ref, "usage_source": gen.usage_source}


def grounding_fields(grounding: Grounding | None) -> dict[str, Any]:
    """A retrieval-augmented answer's citations and unsupported sentences (else nothing)."""
    return {} if grounding is None else grounding.model_dump(mode="json")


def _ask(body: ChatCompletionRequest) -> GenerationRequest:
    max_tokens, max_tokens_param = body.token_limit()
    return GenerationRequest(
        model=body.served_model(),
        conversations=[[m.to_message() for m in body.messages]],
        n=body.n,
        max_tokens=max_tokens,
        max_tokens_param=max_tokens_param,
        prompt_param="messages",
        temperature=DEFAULT_TEMPERATURE if body.temperature is None else body.temperature,
        top_p=DEFAULT_TOP_P if body.top_p is None else body.top_p,
        stop=body.stop_list(),
        seed=body.seed,
        endpoint="chat.completions",
        body=body.as_received(),
    )


def _response_body(gen: Generation, completions: list[Completion], usage: Usage) -> dict[str, Any]:
    grounded = completions[0].grounding is not None
    return {
        "id": f"chatcmpl-{gen.trace_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": gen.name,
        "choices": [
            {
                "index": i,
                "message": {"role": "assistant", "content": c.text},
                "finish_reason": c.finish_reason,
                "logprobs": None,
            }
            | ({"feilun": grounding_fields(c.grounding)} if grounded else {})
            for i, c in enumerate(completions)
        ],
        "usage": usage_body(usage),
        "feilun": feilun_fields(gen) | grounding_fields(completions[0].grounding),
    }


@dataclass
class ChatChunks:
    """Writes `chat.completion.chunk` objects."""

    gen: Generation
    include_usage: bool
    created: int

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": f"chatcmpl-{self.gen.trace_id}",
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.gen.name,
            "choices": choices,
        }
        if self.include_usage:
            chunk["usage"] = None
        return chunk | extra

    def opening(self, index: int) -> dict[str, Any] | None:
        """The assistant role, once per choice; the first also carries `feilun`."""
        choice = {
            "index": index,
            "delta": {"role": "assistant", "content": ""},
            "finish_reason": None,
        }
        extra = {"feilun": feilun_fields(self.gen)} if index == 0 else {}
        return self._chunk([choice], **extra)

    def piece(self, index: int, delta: Delta) -> dict[str, Any]:
        """One piece of text, or the finish with an empty delta."""
        content = {"content": delta.text} if delta.text or delta.finish_reason is None else {}
        choice = {"index": index, "delta": content, "finish_reason": delta.finish_reason}
        if delta.grounding is not None:  # the last piece of a retrieval-augmented answer
            return self._chunk([choice], feilun=grounding_fields(delta.grounding))
        return self._chunk([choice])

    def usage(self, usage: Usage) -> dict[str, Any]:
        """The usage chunk (no choices) sent before `[DONE]`."""
        return self._chunk([]) | {"usage": usage_body(usage)}


async def create_chat_completion(request: Request, body: ChatCompletionRequest) -> Response:
    """Answer one chat completion request, streamed or not; billed before it is returned."""
    gen = await open_generation(request, _ask(body))
    return await respond(
        gen,
        is_stream=bool(body.stream),
        include_usage=bool(body.stream_options and body.stream_options.include_usage),
        chunks=ChatChunks,
        body=_response_body,
    )
