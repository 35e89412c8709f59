"""The request body of `POST /v1/chat/completions`, mirroring OpenAI's.

Unknown fields are ignored, as OpenAI does; known ones are checked for type and range, and a
failure names the field (`messages[0].content`) in the error's `param`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pydantic
from pydantic import Field, StrictBool, StrictInt, StrictStr

from feilun.core.records import Message

MAX_N = 8
MAX_STOP = 4

Temperature = Annotated[float, Field(ge=0.0, le=2.0, strict=True)]
TopP = Annotated[float, Field(gt=0.0, le=1.0, strict=True)]
PositiveInt = Annotated[StrictInt, Field(ge=1)]
Stop = StrictStr | Annotated[list[StrictStr], Field(max_length=MAX_STOP)] | None


class TextPart(pydantic.BaseModel):
    """A text part of a message's content (the only kind of part served)."""

    model_config = pydantic.ConfigDict(extra="ignore")
    type: Literal["text"]
    text: StrictStr


class ChatMessage(pydantic.BaseModel):
    """One message; `developer` is read as `system`, list content is joined text parts."""

    model_config = pydantic.ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: StrictStr | list[TextPart] | None = None
    name: StrictStr | None = None

    @pydantic.model_validator(mode="after")
    def _has_content(self) -> ChatMessage:
        if self.content is None and self.role != "assistant":
            raise ValueError(f"content is required for role {self.role!r}")
        return self

    def to_message(self) -> Message:
        """The core Message the model reads."""
        content = self.content or ""
        text = content if isinstance(content, str) else "\n".join(p.text for p in content)
        role = "system" if self.role == "developer" else self.role
        return Message(role=role, content=text)


class StreamOptions(pydantic.BaseModel):
    """Options of a streamed response."""

    model_config = pydantic.ConfigDict(extra="ignore")
    include_usage: StrictBool = False


RAG_PREFIX = "rag:"  # model `rag:KB[:MODEL]` answers from knowledge base KB


class FeilunOptions(pydantic.BaseModel):
    """Feilun's own request fields, namespaced under `feilun` (OpenAI clients: `extra_body`)."""

    model_config = pydantic.ConfigDict(extra="forbid")
    kb: StrictStr | None = Field(
        None, min_length=1, description="Answer from this knowledge base, with citations."
    )


class ChatCompletionRequest(pydantic.BaseModel):
    """A chat completion request."""

    model_config = pydantic.ConfigDict(extra="ignore")
    model: StrictStr = Field(min_length=1, description="Model name or alias.")
    messages: list[ChatMessage] = Field(min_length=1, description="The conversation so far.")
    n: Annotated[StrictInt, Field(ge=1, le=MAX_N)] = 1
    temperature: Temperature | None = None
    top_p: TopP | None = None
    max_tokens: PositiveInt | None = None
    max_completion_tokens: PositiveInt | None = None
    stop: Stop = None
    seed: StrictInt | None = None
    user: StrictStr | None = None
    stream: StrictBool | None = False
    stream_options: StreamOptions | None = None
    feilun: FeilunOptions | None = None

    def served_model(self) -> str:
        """The model to run: `model`, or `rag:KB:model` when `feilun.kb` names a knowledge base."""
        if self.feilun is not None and self.feilun.kb:
            return f"{RAG_PREFIX}{self.feilun.kb}:{self.model}"
        return self.model

    def stop_list(self) -> list[str]:
        """Stop strings as a list."""
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def token_limit(self) -> tuple[int | None, str]:
        """The completion token limit and the field it came from."""
        if self.max_completion_tokens is not None:
            return self.max_completion_tokens, "max_completion_tokens"
        return self.max_tokens, "max_tokens"

    def as_received(self) -> dict[str, Any]:
        """The request as stored in the trace (the fields the client set)."""
        return self.model_dump(mode="json", exclude_unset=True)
