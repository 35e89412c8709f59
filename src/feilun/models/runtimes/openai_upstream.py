"""Any OpenAI-compatible server (vLLM, Ollama, llama.cpp server, a cloud API) as a ChatModel.

Usage figures are the upstream's own report, which serving records as such.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from feilun.core.errors import BackendUnavailable, ConfigError, NotFound
from feilun.core.protocols import Completion, Delta, GenerationParams, Usage
from feilun.core.records import BaseModel, Message

DEFAULT_KEY_ENV = "OPENAI_API_KEY"


class UpstreamChatModel:
    """A ChatModel that forwards to an OpenAI-compatible endpoint with the `openai` client."""

    def __init__(
        self, base_url: str, model: str, *, api_key: str, name: str, timeout_s: float = 120.0
    ) -> None:
        from openai import OpenAI

        self.name = name
        self.model = model
        self.base_url = base_url
        self._client = OpenAI(base_url=base_url, api_key=api_key, timeout=timeout_s, max_retries=1)

    def _request(self, messages: Sequence[Message], params: GenerationParams) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [m.model_dump() for m in messages],
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
        }
        if params.stop:
            body["stop"] = params.stop
        if params.seed is not None:
            body["seed"] = params.seed
        return body

    def chat(self, messages: Sequence[Message], params: GenerationParams) -> Completion:
        """Forward one non-streamed chat completion."""
        with _upstream_errors(self):
            response = self._client.chat.completions.create(**self._request(messages, params))
        choice = response.choices[0]
        usage = response.usage
        return Completion(
            text=choice.message.content or "",
            finish_reason="length" if choice.finish_reason == "length" else "stop",
            usage=Usage(
                prompt_tokens=usage.prompt_tokens if usage else 0,
                completion_tokens=usage.completion_tokens if usage else 0,
            ),
        )

    def stream(self, messages: Sequence[Message], params: GenerationParams) -> Iterator[Delta]:
        """Forward a streamed chat completion, asking the upstream to report usage."""
        body = self._request(messages, params)
        finish: str | None = None
        usage = Usage()
        with _upstream_errors(self):
            chunks = self._client.chat.completions.create(
                **body, stream=True, stream_options={"include_usage": True}
            )
            for chunk in chunks:
                if chunk.usage is not None:
                    usage = Usage(
                        prompt_tokens=chunk.usage.prompt_tokens,
                        completion_tokens=chunk.usage.completion_tokens,
                    )
                for choice in chunk.choices:
                    finish = choice.finish_reason or finish
                    if choice.delta.content:
                        yield Delta(text=choice.delta.content)
        yield Delta(text="", finish_reason="length" if finish == "length" else "stop", usage=usage)

    def count_tokens(self, messages: Sequence[Message]) -> int:
        """An estimate: upstream servers do not expose their tokenizer.

        One token per CJK character and per four other characters, plus four per message.
        """
        total = 0
        for message in messages:
            wide = sum(1 for ch in message.content if unicodedata.east_asian_width(ch) == "W")
            total += wide + (len(message.content) - wide + 3) // 4 + 4
        return total


@contextmanager
def _upstream_errors(model: UpstreamChatModel) -> Iterator[None]:
    """Turn the `openai` client's exceptions into FeilunErrors naming the upstream."""
    import openai

    where = f"upstream {model.base_url} (model {model.model!r})"
    try:
        yield
    except openai.APIConnectionError as e:
        raise BackendUnavailable(
            f"cannot reach {where}: {e}", "check the server is running and the URL"
        ) from e
    except openai.AuthenticationError as e:
        raise ConfigError(
            f"{where} refused the API key",
            "export the key in the variable named by the model's meta.api_key_env",
        ) from e
    except openai.NotFoundError as e:
        raise NotFound(
            f"{where} does not serve that model", "list its models at GET /models"
        ) from e


def load_runtime(record: BaseModel, cache_dir: Path) -> UpstreamChatModel:
    """Build the upstream ChatModel of a registered `upstream` model."""
    key_env = str(record.meta.get("api_key_env") or DEFAULT_KEY_ENV)
    return UpstreamChatModel(
        record.location,
        str(record.meta.get("upstream_model") or record.name),
        api_key=os.environ.get(key_env, "no-key"),
        name=record.name,
    )
