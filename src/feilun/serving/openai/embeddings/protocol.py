"""The request body of `POST /v1/embeddings`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pydantic
from pydantic import Field, StrictInt, StrictStr

MAX_INPUTS = 2048


class EmbeddingRequest(pydantic.BaseModel):
    """Texts to embed. Token-id arrays (which OpenAI accepts) are refused with a clear 400."""

    model_config = pydantic.ConfigDict(extra="ignore")
    model: StrictStr = Field(min_length=1, description="The embedder's name.")
    input: StrictStr | Annotated[list[StrictStr], Field(min_length=1, max_length=MAX_INPUTS)]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[StrictInt, Field(ge=1)] | None = None
    user: StrictStr | None = None

    @pydantic.field_validator("input", mode="before")
    @classmethod
    def _texts_only(cls, value: Any) -> Any:
        is_ids = isinstance(value, list) and any(
            isinstance(v, int) or (isinstance(v, list) and v and isinstance(v[0], int))
            for v in value
        )
        if is_ids:
            raise ValueError(
                "token id arrays are not supported; send the text (a string or a list of strings)"
            )
        texts = [value] if isinstance(value, str) else value
        if isinstance(texts, list) and any(isinstance(t, str) and not t for t in texts):
            raise ValueError("input must not contain empty strings")
        return value

    def texts(self) -> list[str]:
        """The inputs as a list."""
        return [self.input] if isinstance(self.input, str) else list(self.input)
