"""Weight sources: where a model's files come from (GGUF file, safetensors folder, hub, upstream).

Each source module exposes `SOURCE`, registered under the entry-point group
`feilun.model_sources` by its file stem. A source inspects a location (validating it and
reading the card facts) and loads the weights for the transformers runtime.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class SourceInfo:
    """Card facts a source reads from a location without loading the weights."""

    architecture: str
    parameters: int
    context_length: int
    chat_template: str
    sha256: str
    runtime: str = "transformers"
    extra: dict[str, Any] = field(default_factory=dict)


class ModelSource(Protocol):
    """Inspects and loads the weights at one kind of location."""

    def inspect(self, location: str) -> SourceInfo:
        """Validate `location` and read its card facts; raise a FeilunError when unusable."""
        ...

    def load(self, location: str, cache_dir: Path) -> tuple[Any, Any]:
        """Return `(model, tokenizer)` ready for the transformers runtime."""
        ...
