"""OpenAI-compatible upstream servers (vLLM, Ollama, llama.cpp server, a cloud API) as models.

The location is the server's base URL (`http://host:8000/v1`); the upstream model id and
the name of the environment variable holding its API key are kept in the record's `meta`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from feilun.core.errors import ConfigError
from feilun.models.sources import SourceInfo


class UpstreamSource:
    """A remote OpenAI-compatible endpoint: no local weights, served by `openai_upstream`."""

    def inspect(self, location: str) -> SourceInfo:
        """Validate the base URL; reachability is checked when the model is first used."""
        parsed = urlparse(location)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ConfigError(
                f"upstream URL {location!r} is not an http(s) URL",
                "pass the server's OpenAI base URL, e.g. http://127.0.0.1:8000/v1",
            )
        return SourceInfo(
            architecture="openai-compatible",
            parameters=0,
            context_length=0,
            chat_template="",
            sha256="",
            runtime="openai_upstream",
        )

    def load(self, location: str, cache_dir: Path) -> tuple[Any, Any]:
        """Upstream models have no local weights."""
        raise ConfigError(
            f"{location} is an upstream server, not local weights",
            "serve it with the `openai_upstream` runtime",
        )


SOURCE = UpstreamSource()
