"""Text completions, served by chat models: each prompt is sent as one user message.

Feilun's runtimes answer chat messages only, so a raw prompt goes through the model's chat
template as a single user turn. For n > 1 or several prompts, choice `i * n + j` is the j-th
answer to prompt i, as OpenAI orders them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from fastapi.responses import Response
from starlette.requests import Request

from feilun.core.protocols import Completion, Delta, Usage
from feilun.core.records import Message
from feilun.serving.openai.chat_completions.service import (
    DEFAULT_TEMPERATURE,
    DEFAULT_TOP_P,
    feilun_fields,
    usage_body,
)
from feilun.serving.openai.completions.protocol import CompletionRequest
from feilun.serving.openai.generation import (
    Generation,
    GenerationRequest,
    open_generation,
    respond,
)


def _ask(body: CompletionRequest) -> GenerationRequest:
    return GenerationRequest(
        model=body.model,
        conversations=[[Message(role="user", content=p)] for p in body.prompts()],
        n=body.n,
        max_tokens=body.max_tokens,
        max_tokens_param="max_tokens",
        prompt_param="prompt",
        temperature=DEFAULT_TEMPERATURE if body.temperature is None else body.temperature,
        top_p=DEFAULT_TOP_P if body.top_p is None else body.top_p,
        stop=body.stop_list(),
        seed=body.seed,
        endpoint="completions",
        body=body.as_received(),
    )


def _choice(index: int, text: str, finish_reason: str | None) -> dict[str, Any]:
    return {"index": index, "text": text, "finish_reason": finish_reason, "logprobs": None}


@dataclass
class TextChunks:
    """Writes `text_completion` stream chunks."""

    gen: Generation
    include_usage: bool
    created: int

    def _chunk(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": f"cmpl-{self.gen.trace_id}",
            "object": "text_completion",
            "created": self.created,
            "model": self.gen.name,
            "choices": choices,
        }
        if self.include_usage:
            chunk["usage"] = None
        return chunk

    def opening(self, index: int) -> dict[str, Any] | None:
        """Text completions have no role chunk; the first choice announces `feilun`."""
        if index:
            return None
        return self._chunk([_choice(0, "", None)]) | {"feilun": feilun_fields(self.gen)}

    def piece(self, index: int, delta: Delta) -> dict[str, Any]:
        """One piece of text of choice `index`."""
        return self._chunk([_choice(index, delta.text, delta.finish_reason)])

    def usage(self, usage: Usage) -> dict[str, Any]:
        """The usage chunk (no choices) sent before `[DONE]`."""
        return self._chunk([]) | {"usage": usage_body(usage)}


def _response_body(gen: Generation, completions: list[Completion], usage: Usage) -> dict[str, Any]:
    return {
        "id": f"cmpl-{gen.trace_id}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": gen.name,
        "choices": [_choice(i, c.text, c.finish_reason) for i, c in enumerate(completions)],
        "usage": usage_body(usage),
        "feilun": feilun_fields(gen),
    }


async def create_completion(request: Request, body: CompletionRequest) -> Response:
    """Answer one text completion request, streamed or not; billed before it is returned."""
    gen = await open_generation(request, _ask(body))
    return await respond(
        gen,
        is_stream=bool(body.stream),
        include_usage=bool(body.stream_options and body.stream_options.include_usage),
        chunks=TextChunks,
        body=_response_body,
    )
