"""The request body of `POST /v1/completions` (OpenAI's legacy text completions)."""

from __future__ import annotations

from typing import Annotated, Any

import pydantic
from pydantic import Field, StrictBool, StrictInt, StrictStr

from feilun.serving.openai.chat_completions.protocol import (
    MAX_N,
    PositiveInt,
    Stop,
    StreamOptions,
    Temperature,
    TopP,
)

DEFAULT_MAX_TOKENS = 16  # OpenAI's default for this endpoint
MAX_PROMPTS = 32


class CompletionRequest(pydantic.BaseModel):
    """A text completion request: one prompt or a list of prompts."""

    model_config = pydantic.ConfigDict(extra="ignore")
    model: StrictStr = Field(min_length=1, description="Model name or alias.")
    prompt: StrictStr | Annotated[list[StrictStr], Field(min_length=1, max_length=MAX_PROMPTS)]
    n: Annotated[StrictInt, Field(ge=1, le=MAX_N)] = 1
    temperature: Temperature | None = None
    top_p: TopP | None = None
    max_tokens: PositiveInt | None = DEFAULT_MAX_TOKENS
    stop: Stop = None
    seed: StrictInt | None = None
    user: StrictStr | None = None
    echo: StrictBool = False
    stream: StrictBool | None = False
    stream_options: StreamOptions | None = None

    @pydantic.field_validator("echo")
    @classmethod
    def _no_echo(cls, value: bool) -> bool:
        if value:
            raise ValueError("echo=true is not supported; prepend the prompt yourself")
        return value

    def prompts(self) -> list[str]:
        """The prompts as a list."""
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    def stop_list(self) -> list[str]:
        """Stop strings as a list."""
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def as_received(self) -> dict[str, Any]:
        """The request as stored in the trace (the fields the client set)."""
        return self.model_dump(mode="json", exclude_unset=True)
